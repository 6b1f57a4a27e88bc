"""`kaptain-warden serve`: the admission server (mutating and validating webhook) over TLS."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from kaptain_warden.commands.options import (
    add_log_options,
    add_policy_option,
    bounded,
    env_default,
)

if TYPE_CHECKING:
    from kaptain_warden.policies.model import Policy
    from kaptain_warden.webhook.parents import ParentResolver, ProvenanceLookup
    from kaptain_warden.webhook.settings import WebhookSettings

DESCRIPTION = """\
Serve the admission webhooks over HTTPS with gunicorn (threaded workers, keep-alive):

  POST /mutate    stamp owner and TTL metadata on governed objects (JSONPatch)
  POST /validate  deny forged, changed or out-of-policy warden metadata
  GET  /healthz, /readyz, /metrics (Prometheus text format)

Every option with a value also reads KAPTAIN_WARDEN_<OPTION> from the environment
(e.g. KAPTAIN_WARDEN_PORT=9443); a flag on the command line wins.
"""

EPILOG = """\
examples:
  # on a laptop: a generated CA and certificate (cached, reused), the built-in policy
  kaptain-warden serve --self-signed

  # in a cluster (what the Helm chart runs)
  kaptain-warden serve --host 0.0.0.0 --policy /etc/kaptain-warden/policy.yaml \\
      --tls-cert-file /tls/tls.crt --tls-private-key-file /tls/tls.key --log-format json

exit status: 0 after a graceful stop (SIGTERM, SIGINT), 1 when the policy or the TLS
material cannot be used (errors on stderr, before any worker starts), 2 for bad options.
"""


def _on_error(admits: bool) -> str:
    return "admit" if admits else "deny"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `serve`."""
    from kaptain_warden.webhook.settings import WebhookSettings

    defaults = WebhookSettings()
    parser = subparsers.add_parser(
        "serve",
        help="run the admission server (mutating + validating webhook) over TLS",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listen = parser.add_argument_group("listening")
    listen.add_argument(
        "--host",
        default=env_default("host", defaults.host),
        help="address to listen on (default: %(default)s; use 0.0.0.0 in a pod)",
    )
    listen.add_argument(
        "--port",
        type=bounded(int, 0, 65535),
        default=env_default("port", defaults.port),
        help="HTTPS port; 0 picks a free one, printed on start (default: %(default)s)",
    )
    add_policy_option(parser)
    tls = parser.add_argument_group("TLS (one of: a certificate and its key, or --self-signed)")
    tls.add_argument(
        "--tls-cert-file",
        metavar="FILE",
        default=env_default("tls_cert_file", None),
        help="PEM serving certificate; re-read for each new connection, so renewals apply",
    )
    tls.add_argument(
        "--tls-private-key-file",
        metavar="FILE",
        default=env_default("tls_private_key_file", None),
        help="PEM private key of --tls-cert-file",
    )
    tls.add_argument(
        "--self-signed",
        action="store_true",
        help="generate a CA and a certificate for localhost/127.0.0.1 (and --host) into the "
        "cache directory, reused while valid; the CA path is printed on start",
    )
    tls.add_argument(
        "--self-signed-dir",
        metavar="DIR",
        default=None,
        help="where --self-signed keeps its files (default: $KAPTAIN_WARDEN_CACHE/self-signed, "
        "else ${XDG_CACHE_HOME:-~/.cache}/kaptain-warden/self-signed)",
    )
    work = parser.add_argument_group("workers")
    work.add_argument(
        "--workers",
        type=bounded(int, 1),
        default=env_default("workers", defaults.workers),
        help="gunicorn worker processes, about one per core (default: %(default)s)",
    )
    work.add_argument(
        "--threads",
        type=bounded(int, 1),
        default=env_default("threads", defaults.threads),
        help="threads per worker: reviews one process serves at once (default: %(default)s)",
    )
    work.add_argument(
        "--keepalive",
        metavar="SECONDS",
        type=bounded(int, 0),
        default=env_default("keepalive", defaults.keepalive_seconds),
        help="how long an idle connection stays open for the API server to reuse "
        "(default: %(default)s)",
    )
    work.add_argument(
        "--graceful-timeout",
        metavar="SECONDS",
        type=bounded(int, 1),
        default=env_default("graceful_timeout", defaults.graceful_timeout_seconds),
        help="on SIGTERM, how long in-flight reviews may take before workers are killed "
        "(default: %(default)s)",
    )
    conns = parser.add_argument_group("connection deadlines and bounds")
    for flag, field, what in (
        ("--handshake-timeout", "handshake_timeout_seconds", "to finish the TLS handshake"),
        ("--header-timeout", "header_timeout_seconds", "to send the request line and headers"),
        ("--body-timeout", "body_timeout_seconds", "to send the body (and to read the answer)"),
    ):
        conns.add_argument(
            flag,
            metavar="SECONDS",
            type=bounded(float, 0.1),
            default=env_default(field.removesuffix("_seconds"), getattr(defaults, field)),
            help=f"time a connection has {what}; then it is closed (default: %(default)s)",
        )
    conns.add_argument(
        "--max-client-connections",
        type=bounded(int, 1),
        default=env_default("max_client_connections", defaults.max_client_connections),
        help="connections one client address may hold per worker (default: %(default)s)",
    )
    conns.add_argument(
        "--body-bytes-in-flight",
        type=bounded(int, 1),
        default=env_default("body_bytes_in_flight", defaults.body_bytes_in_flight),
        help="request body bytes one worker holds at once; more waits (default: %(default)s)",
    )
    conns.add_argument(
        "--decode-bytes-per-request",
        type=bounded(int, 1),
        default=env_default("decode_bytes_per_request", defaults.decode_bytes_per_request),
        help="memory one body may take once decoded (bytes + 64 per JSON value); "
        "costlier bodies get HTTP 413 (default: %(default)s)",
    )
    reviews = parser.add_argument_group("reviews")
    reviews.add_argument(
        "--max-body-bytes",
        type=bounded(int, 1),
        default=env_default("max_body_bytes", defaults.max_body_bytes),
        help="larger request bodies get HTTP 413 (default: %(default)s, 8 MiB)",
    )
    reviews.add_argument(
        "--mutate-on-error",
        choices=("admit", "deny"),
        default=env_default("mutate_on_error", _on_error(defaults.mutate_admits_on_error)),
        help="/mutate's answer when it fails unexpectedly: admit unchanged, or deny "
        "(default: %(default)s)",
    )
    reviews.add_argument(
        "--validate-on-error",
        choices=("admit", "deny"),
        default=env_default("validate_on_error", _on_error(defaults.validate_admits_on_error)),
        help="/validate's answer when it fails unexpectedly (default: %(default)s)",
    )
    reviews.add_argument(
        "--kubeconfig",
        metavar="FILE",
        default=env_default("kubeconfig", None),
        help="kubeconfig for parent lookups (owner inheritance); default: the pod's "
        "ServiceAccount in a cluster, no lookups elsewhere",
    )
    reviews.add_argument(
        "--enable-bench-endpoint",
        action="store_true",
        help="also serve POST /_bench/constant, a constant answer: the throughput ceiling "
        "bench/admission.py compares with (off by default)",
    )
    logs = parser.add_argument_group("logs")
    add_log_options(
        logs,
        level_help="(default: %(default)s: one line per review)",
        formats=("auto", "json", "text"),
        format_default=defaults.log_format,
        format_help="JSON lines, text, or auto: text on a terminal, else JSON "
        "(default: %(default)s)",
    )
    parser.set_defaults(run=run)


def _parent_lookups(
    settings: WebhookSettings, policy: Policy
) -> Callable[[], ParentResolver | None] | None:
    """A factory of parent lookups for each worker, when there is an API server to ask.

    Only with --kubeconfig or inside a pod: a laptop's default kubeconfig may point at any
    cluster, so it is never picked up silently.
    """
    if not settings.kubeconfig and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None

    def build() -> ParentResolver | None:
        import logging

        from kaptain_warden.kube.client import load_api_client
        from kaptain_warden.kube.parents import ParentOwnerResolver

        try:
            api_client = load_api_client(settings.kubeconfig)
        except Exception:
            # Admission never depends on a lookup: serve, without owner inheritance.
            logging.getLogger("kaptain_warden.serve").exception(
                "cannot build a Kubernetes client; serving without parent lookups"
            )
            return None
        return ParentOwnerResolver(api_client, keys=policy.keys, kinds=policy.kinds)

    return build


def _provenance_lookups(
    settings: WebhookSettings, policy: Policy
) -> Callable[[], ProvenanceLookup | None] | None:
    """A factory of notebook and Profile owner lookups for each worker (as `_parent_lookups`)."""
    if not settings.kubeconfig and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None

    def build() -> ProvenanceLookup | None:
        import logging

        from kaptain_warden.kube.client import load_api_client
        from kaptain_warden.kube.provenance import ProvenanceResolver

        try:
            api_client = load_api_client(settings.kubeconfig)
        except Exception:
            logging.getLogger("kaptain_warden.serve").exception(
                "cannot build a Kubernetes client; serving without provenance lookups"
            )
            return None
        return ProvenanceResolver(api_client, keys=policy.keys)

    return build


def _fail(message: str, code: int = 1) -> int:
    print(f"kaptain-warden serve: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    """Check the policy and TLS material, then serve until stopped."""
    import dataclasses
    import logging
    import ssl
    from datetime import UTC, datetime
    from pathlib import Path

    from kaptain_warden.certs.selfsigned import (
        default_cache_dir,
        ensure_self_signed,
        sans_for_host,
    )
    from kaptain_warden.logs import configure_logging
    from kaptain_warden.policies.loader import PolicyError, load_policy
    from kaptain_warden.webhook.server import serve
    from kaptain_warden.webhook.settings import WebhookSettings

    settings = WebhookSettings(
        host=args.host,
        port=int(args.port),
        policy_file=args.policy,
        tls_cert_file=args.tls_cert_file,
        tls_private_key_file=args.tls_private_key_file,
        workers=int(args.workers),
        threads=int(args.threads),
        keepalive_seconds=int(args.keepalive),
        graceful_timeout_seconds=int(args.graceful_timeout),
        max_body_bytes=int(args.max_body_bytes),
        handshake_timeout_seconds=float(args.handshake_timeout),
        header_timeout_seconds=float(args.header_timeout),
        body_timeout_seconds=float(args.body_timeout),
        max_client_connections=int(args.max_client_connections),
        body_bytes_in_flight=int(args.body_bytes_in_flight),
        decode_bytes_per_request=int(args.decode_bytes_per_request),
        mutate_admits_on_error=args.mutate_on_error == "admit",
        validate_admits_on_error=args.validate_on_error == "admit",
        enable_bench_endpoint=args.enable_bench_endpoint,
        log_level=args.log_level,
        log_format=args.log_format,
        kubeconfig=args.kubeconfig,
    )
    json_logs = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )
    # Every review logs a line from one of several threads: batch the writes (logs.py).
    configure_logging(settings.log_level, json=json_logs, batched=True)
    log = logging.getLogger("kaptain_warden.serve")

    # Everything that can be wrong is found here, in one process, before gunicorn forks.
    try:
        policy = load_policy(settings.policy_file)
    except PolicyError as exc:
        for error in exc.errors:
            print(f"{exc.source}: {error}", file=sys.stderr)
        return 1

    if settings.kubeconfig and not Path(settings.kubeconfig).is_file():
        return _fail(f"--kubeconfig {settings.kubeconfig}: no such file")

    if args.self_signed:
        if settings.tls_cert_file or settings.tls_private_key_file:
            return _fail("use either --self-signed or --tls-cert-file/--tls-private-key-file", 2)
        directory = Path(args.self_signed_dir) if args.self_signed_dir else default_cache_dir()
        dns_names, ip_addresses = sans_for_host(settings.host)
        try:
            files, generated = ensure_self_signed(
                directory, now=datetime.now(UTC), dns_names=dns_names, ip_addresses=ip_addresses
            )
        except OSError as exc:
            return _fail(f"cannot write the self-signed certificate to {directory}: {exc}")
        log.info(
            "%s self-signed certificate in %s",
            "generated a" if generated else "reusing the",
            directory,
            extra={"ca_file": str(files.ca_file)},
        )
        settings = dataclasses.replace(
            settings,
            tls_cert_file=str(files.cert_file),
            tls_private_key_file=str(files.key_file),
            ca_file=str(files.ca_file),
        )
    elif not (settings.tls_cert_file and settings.tls_private_key_file):
        return _fail(
            "TLS is required: give --tls-cert-file and --tls-private-key-file, or --self-signed",
            2,
        )
    cert_file, key_file = settings.tls_cert_file, settings.tls_private_key_file
    assert cert_file is not None and key_file is not None  # one of the branches above set them
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        return _fail(f"cannot use {cert_file} with {key_file}: {exc}")

    log.info(
        "starting the admission server with policy %s (%d rules)",
        policy.source,
        len(policy.rules),
        extra={"settings": dataclasses.asdict(settings)},
    )
    return serve(
        settings,
        policy=policy,
        parents=_parent_lookups(settings, policy),
        provenance=_provenance_lookups(settings, policy),
    )
