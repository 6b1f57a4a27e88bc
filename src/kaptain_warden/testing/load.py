"""A create load for fault tests and benchmarks: Secrets made by one identity at a steady rate,
each create's outcome recorded, until stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kaptain_warden.kube.client import request_json
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.testing.controlplane import ControlPlane

__all__ = ["Created", "SecretLoad"]


@dataclass(frozen=True)
class Created:
    """One create: when it was sent (monotonic seconds), and what came back."""

    name: str
    sent_at: float
    ok: bool
    stamped: bool
    error: str = ""


class SecretLoad:
    """Creates Opaque Secrets named `<prefix>-<n>` as `user` at `rate` per second on a thread.

    Creates are sent one after the other (a notebook's SDK does the same): when one takes long
    (a webhook call waiting for its timeout) the rate drops instead of piling up requests.
    """

    def __init__(
        self,
        plane: ControlPlane,
        *,
        namespace: str,
        user: str,
        groups: Iterable[str] = (),
        rate: float = 20.0,
        prefix: str = "load",
        keys: MetadataKeys | None = None,
    ) -> None:
        self.namespace = namespace
        self.results: list[Created] = []
        self._plane = plane
        self._user = user
        self._groups = tuple(groups)
        self._interval = 1.0 / rate
        self._prefix = prefix
        self._keys = keys or MetadataKeys()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="secret-load", daemon=True)

    def __enter__(self) -> SecretLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Created]:
        """Stop sending and return every create's outcome, in order."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)
        return self.results

    def _run(self) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/secrets"
        with self._plane.impersonating_api_client(self._user, self._groups) as api_client:
            n = 0
            next_at = time.monotonic()
            while not self._stop.is_set():
                name = f"{self._prefix}-{n:05d}"
                n += 1
                sent = time.monotonic()
                body: dict[str, Any] = {
                    "metadata": {"name": name},
                    "type": "Opaque",
                    "stringData": {"token": name},
                }
                try:
                    created = request_json(api_client, "POST", path, body=body)
                except ApiError as exc:
                    # No status: a refused connection, a timeout (named by what the client raised).
                    what = f"HTTP {exc.status}" if exc.status else type(exc.__cause__).__name__
                    self.results.append(Created(name, sent, False, False, what))
                except Exception as exc:  # anything else: recorded, not raised
                    self.results.append(Created(name, sent, False, False, type(exc).__name__))
                else:
                    labels = (created.get("metadata") or {}).get("labels") or {}
                    self.results.append(Created(name, sent, True, self._keys.managed in labels))
                next_at += self._interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))
