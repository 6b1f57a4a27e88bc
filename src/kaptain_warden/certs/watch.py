"""`kaptain-warden certs watch`: the sync pass every few seconds, and its health endpoints."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kaptain_warden.certs.sync import CertificateManager
from kaptain_warden.kube.errors import describe_error
from kaptain_warden.probes import Answer, ProbeServer, plain

__all__ = ["Watcher", "serve_health"]

logger = logging.getLogger(__name__)


class Watcher:
    """Runs `sync` every `interval` seconds; ready while the last success is recent."""

    def __init__(
        self,
        manager: CertificateManager,
        *,
        interval: float,
        stale_after: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._manager = manager
        self._interval = interval
        self._stale_after = stale_after
        self._monotonic = monotonic
        self._last_success: float | None = None
        self._last_error = "no pass has completed yet"
        self.stop = threading.Event()

    def readiness(self) -> tuple[bool, str]:
        """(ready, why). Not ready when the files or caBundles may lag behind the Secret."""
        if self._last_success is None:
            return False, self._last_error
        age = self._monotonic() - self._last_success
        if age > self._stale_after:
            return False, f"last successful pass {age:.0f}s ago: {self._last_error}"
        return True, "ok"

    def run_once(self) -> None:
        """One pass; failures are logged and leave the last success time unchanged."""
        try:
            result = self._manager.sync()
        except Exception as exc:  # one bad pass must not end the loop; readiness reports it
            self._last_error = describe_error(exc)
            logger.exception("certificate sync failed")
            return
        if result.published:
            self._last_success = self._monotonic()
        else:
            self._last_error = "the webhook configurations do not carry the CA bundle yet"

    def run(self) -> None:
        """Sync now and then every `interval` seconds until `stop` is set."""
        while not self.stop.is_set():
            self.run_once()
            self.stop.wait(self._interval)


def serve_health(watcher: Watcher, port: int, host: str = "0.0.0.0") -> ProbeServer:
    """Serve `GET /healthz` (alive) and `GET /readyz` (synced recently) in a daemon thread."""

    def ready() -> Answer:
        ok, why = watcher.readiness()
        return plain(200 if ok else 503, why)

    routes = {"/healthz": lambda: plain(200, "ok"), "/readyz": ready}
    return ProbeServer(routes, address=host, port=port, name="certs-health").start()
