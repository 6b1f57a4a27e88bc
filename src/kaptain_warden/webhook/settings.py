"""The admission server's settings: one frozen dataclass, filled from `serve` flags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024

LogFormat = Literal["auto", "json", "text"]


@dataclass(frozen=True)
class WebhookSettings:
    """Everything the admission server is configured with. No field holds a secret."""

    host: str = "127.0.0.1"
    """Address to listen on. Default 127.0.0.1 (a laptop); the Helm chart passes 0.0.0.0."""

    port: int = 8443
    """TCP port of the HTTPS listener. Default 8443; 0 picks a free port (printed on start)."""

    policy_file: str | None = None
    """Policy YAML file. Default None: the built-in policy for the Kaptain SDK's objects."""

    tls_cert_file: str | None = None
    """PEM serving certificate (chain). Checked on every new connection and re-read when it
    changes, so a renewed file
    applies without a restart. Required to serve; `serve --self-signed` generates one."""

    tls_private_key_file: str | None = None
    """PEM private key of `tls_cert_file`. Required to serve."""

    ca_file: str | None = None
    """PEM CA bundle clients should trust (the webhook configuration's caBundle), printed on
    start. Default None: unknown (a certificate issued elsewhere)."""

    workers: int = 2
    """gunicorn worker processes. Default 2 (one per core of a small node)."""

    threads: int = 4
    """Threads per worker (gunicorn gthread): requests served at once by one process. Default 4;
    decisions are CPU-bound, extra threads only help while a parent lookup waits on the API."""

    keepalive_seconds: int = 30
    """How long an idle kept-alive connection stays open. Default 30: the API server reuses
    connections to webhooks, so each review should not pay a new TLS handshake."""

    graceful_timeout_seconds: int = 20
    """On SIGTERM, how long in-flight reviews may take before workers are killed. Default 20,
    inside Kubernetes' default terminationGracePeriodSeconds of 30."""

    handshake_timeout_seconds: float = 5.0
    """How long a new connection may take to complete its TLS handshake. Default 5."""

    header_timeout_seconds: float = 5.0
    """How long the request line and headers may take, from the handshake or from the first
    byte of a request on a kept-alive connection. Default 5 (the API server sends a review
    in one go)."""

    body_timeout_seconds: float = 10.0
    """How long the body may take once the headers are read, waiting for the body budget
    included; also the bound on writing the answer. Default 10, the API server's default
    webhook timeout (the chart passes `webhook.timeoutSeconds`)."""

    max_client_connections: int = 128
    """Connections one client address may hold in one worker (handshaking, sending, or idle).
    At the bound its oldest idle connection is closed for the new one, else the new one is
    refused. Default 128: the API server reuses its connections."""

    body_bytes_in_flight: int = DEFAULT_MAX_BODY_BYTES
    """Bytes of bodies over 128 KiB one worker holds at once (being read, or being decided); a
    body that does not fit waits unread for an earlier one to finish (one body always fits).
    Smaller bodies have 2 MiB of their own; one client address holds at most half of either,
    and a stalled body loses its bytes when another waits (`webhook/body_pool.py`). Default
    8 MiB. Bounds memory: docs/operators/admission-server.md has the formula."""

    decode_bytes_per_request: int = 40 * 1024 * 1024
    """Memory one request's body may take once decoded, estimated before decoding (its bytes
    plus 64 per JSON value); a costlier body gets HTTP 413. Requests costing over 1 MiB that a
    worker decides at once add up to at most this much (more wait their turn). Default 40 MiB:
    an UPDATE of the largest object etcd keeps (1.5 MiB, twice) in dense JSON costs about
    30 MiB, and with 2 workers the README's formula stays well under the chart's 320 Mi."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest AdmissionReview body accepted; larger ones get HTTP 413. Default 8 MiB: etcd
    keeps objects up to ~1.5 MiB, and an UPDATE's review carries two of them."""

    mutate_admits_on_error: bool = True
    """What /mutate answers when a handler fails unexpectedly: True (default) admits the object
    unchanged (the sweeper's backfill stamps it later); False refuses it with code 500."""

    validate_admits_on_error: bool = False
    """What /validate answers when a handler fails unexpectedly: False (default) denies, saying it
    is an internal error; True admits."""

    enable_bench_endpoint: bool = False
    """Serve `POST /_bench/constant`, a constant AdmissionReview: the stack's throughput ceiling
    for `bench/admission.py`. Default False."""

    log_level: str = "INFO"
    """Level of the server's logs (DEBUG, INFO, WARNING, ERROR). Default INFO: one line per
    review."""

    log_format: LogFormat = "auto"
    """`json` (one object per line), `text`, or `auto` (default): text on a terminal, else JSON."""

    lookup_budget_seconds: float = 1.0
    """One deadline for all of a review's parent and provenance lookups together, counted from
    the start of the review. Default 1 s, far below the webhook's timeout: a lookup out of
    time leaves out what it would have found, and never widens a claim."""

    kubeconfig: str | None = None
    """Kubeconfig for parent lookups (owner inheritance). Default None: in-cluster config when
    a lookup needs the API. Reading parents needs RBAC `get` on the parent kinds."""
