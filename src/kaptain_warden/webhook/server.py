"""gunicorn over TLS around the admission app: threaded workers, keep-alive, graceful stop."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from prometheus_client import multiprocess, values

from kaptain_warden.policies.model import Policy
from kaptain_warden.webhook.app import create_app
from kaptain_warden.webhook.metrics import MULTIPROCESS_ENV, new_metrics_dir
from kaptain_warden.webhook.parents import ParentResolver, ProvenanceLookup
from kaptain_warden.webhook.settings import WebhookSettings
from kaptain_warden.webhook.worker import ConnectionLimits, DeadlineWorker

logger = logging.getLogger(__name__)

# gunicorn kills a worker whose main loop has not reported for this long. The gthread loop
# reports every second whatever its threads do, so this only catches a wedged process.
WORKER_TIMEOUT_SECONDS = 30


class _Logger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's own messages through our handlers (JSON lines or text), not its formats."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True


def _url(host: str, port: int) -> str:
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


class AdmissionServer(BaseApplication):  # type: ignore[misc]
    """A programmatic gunicorn application whose workers build the app with `create_app`."""

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        policy: Policy,
        announce: Callable[[str], None],
        parents: Callable[[], ParentResolver | None] | None = None,
        provenance: Callable[[], ProvenanceLookup | None] | None = None,
    ) -> None:
        self.settings = settings
        # Loaded (and checked) by the caller before gunicorn forks: each worker inherits it.
        self.policy = policy
        self.announce = announce
        self.parents = parents
        self.provenance = provenance
        self.connection_limits = ConnectionLimits(
            handshake_seconds=settings.handshake_timeout_seconds,
            header_seconds=settings.header_timeout_seconds,
            body_seconds=settings.body_timeout_seconds,
            write_seconds=settings.body_timeout_seconds,
            keepalive_seconds=settings.keepalive_seconds,
            max_connections_per_client=settings.max_client_connections,
            body_bytes_in_flight=settings.body_bytes_in_flight,
            max_body_bytes=settings.max_body_bytes,
            decode_bytes_per_request=settings.decode_bytes_per_request,
        )
        super().__init__(prog="kaptain-warden serve")

    def load_config(self) -> None:
        """gunicorn settings derived from ours; nothing is read from files or the environment."""
        s = self.settings
        options: dict[str, Any] = {
            "bind": [f"[{s.host}]:{s.port}" if ":" in s.host else f"{s.host}:{s.port}"],
            "workers": s.workers,
            # gthread: one connection per request would cost a TLS handshake each (the sync
            # worker closes every connection); threads keep a slow review from blocking others.
            # DeadlineWorker is gthread whose threads never wait on a client (worker.py).
            "worker_class": DeadlineWorker,
            "threads": s.threads,
            "keepalive": s.keepalive_seconds,
            "graceful_timeout": s.graceful_timeout_seconds,
            "timeout": WORKER_TIMEOUT_SECONDS,
            "certfile": s.tls_cert_file,
            "keyfile": s.tls_private_key_file,
            "logger_class": _Logger,
            "loglevel": s.log_level.lower(),
            "accesslog": None,  # one line per review comes from the app, with its verdict
            "proc_name": "kaptain-warden",
            # Each server would otherwise share $HOME/.gunicorn/gunicorn.ctl.
            "control_socket_disable": True,
            "when_ready": self._when_ready,
            "child_exit": _child_exit,
        }
        if os.path.isdir("/dev/shm"):
            # The heartbeat file: on a container's disk-backed /tmp a stalled fsync looks like
            # a hung worker (gunicorn docs, "Blocking OS calls").
            options["worker_tmp_dir"] = "/dev/shm"
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """Build the app in the worker (after fork), with the policy the arbiter loaded."""
        # Built here, after fork: API clients' connection pools must not cross processes.
        parents = self.parents() if self.parents is not None else None
        provenance = self.provenance() if self.provenance is not None else None
        return create_app(self.settings, policy=self.policy, parents=parents, provenance=provenance)

    def _when_ready(self, server: Any) -> None:
        wildcard = self.settings.host in ("", "0.0.0.0", "::")
        for listener in server.LISTENERS:
            port = listener.sock.getsockname()[1]
            # A wildcard address is no URL to give anyone; the certificate covers localhost.
            shown = "localhost" if wildcard else self.settings.host
            every = " (and every other address of this host)" if wildcard else ""
            self.announce(
                f"kaptain-warden admission server listening on {_url(shown, port)}{every}"
            )
        if self.settings.ca_file:
            self.announce(
                f"CA bundle (the webhook configuration's caBundle): {self.settings.ca_file}"
            )


def _child_exit(server: Any, worker: Any) -> None:
    """Drop the samples files of a dead worker's live gauges (counters are kept)."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _print(line: str) -> None:
    print(line, flush=True)


def serve(
    settings: WebhookSettings,
    *,
    policy: Policy,
    parents: Callable[[], ParentResolver | None] | None = None,
    provenance: Callable[[], ProvenanceLookup | None] | None = None,
    announce: Callable[[str], None] = _print,
) -> int:
    """Run the server until SIGTERM/SIGINT; returns the exit code (0 after a graceful stop).

    `parents` builds the parent lookups in each worker (None: no owner inheritance);
    `provenance` the notebook and Profile owner lookups (None: those keys left out).

    On SIGTERM gunicorn stops accepting, lets workers finish in-flight reviews for up to
    `graceful_timeout_seconds`, closes kept-alive connections, then exits.
    """
    metrics_dir = new_metrics_dir()
    os.environ[MULTIPROCESS_ENV] = metrics_dir
    # prometheus_client picks its storage at import; another module may have imported it
    # before the variable was set, so pick again.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    arbiter_pid = os.getpid()
    try:
        AdmissionServer(
            settings, policy=policy, announce=announce, parents=parents, provenance=provenance
        ).run()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        # Workers leave through here too (gunicorn ends them with SystemExit after fork):
        # only the arbiter owns the directory.
        if os.getpid() == arbiter_pid:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        sys.stdout.flush()
    return 0
