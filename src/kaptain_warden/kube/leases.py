"""Leader election on a coordination.k8s.io/v1 Lease: a small loop of our own that `stop()`
ends promptly and that hands the Lease over on the way out.

The Lease is written as client-go's `resourcelock.LeaseLock` writes it (holderIdentity,
leaseDurationSeconds, acquireTime and renewTime as MicroTime, leaseTransitions counting changes
of holder), so `kubectl get lease` reads right and replicas of another version interoperate.
Every write carries the resourceVersion read just before it: of two replicas racing for the
same Lease, the API server accepts one write and answers the other 409 Conflict.

The sweeper decides what leading means (`sweeper/leader.py`); this only runs the election.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import resource_path
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.policies.timestamps import parse_time

__all__ = [
    "Attempt",
    "LeaseElection",
    "claimed",
    "expires_at",
    "may_take",
    "micro_time",
    "released",
]

logger = logging.getLogger(__name__)


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime in UTC: `2026-05-01T12:00:00.123456Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expires_at(spec: Mapping[str, Any]) -> datetime | None:
    """When a Lease held as `spec` says expires (renewTime + leaseDurationSeconds); None when
    either cannot be read."""
    renewed = parse_time(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds")
    if renewed is None or not isinstance(duration, int) or isinstance(duration, bool):
        return None
    return renewed + timedelta(seconds=duration)


def may_take(spec: Mapping[str, Any], identity: str, now: datetime) -> bool:
    """Whether `identity` may write itself into a Lease whose spec is `spec`, at `now`.

    Yes when nobody holds it (no holder, or the empty holder a released Lease has), when it
    is ours already, or when its holder let it expire (renewTime + leaseDurationSeconds is
    past). A Lease whose times cannot be read is treated as expired: a holder that wrote
    nothing readable cannot be waited for.
    """
    holder = spec.get("holderIdentity")
    if not holder or holder == identity:
        return True
    expiry = expires_at(spec)
    return expiry is None or expiry <= now


def claimed(
    spec: Mapping[str, Any] | None, identity: str, lease_duration: int, now: datetime
) -> dict[str, Any]:
    """The spec that makes `identity` the holder at `now` (a first claim or a renewal).

    A renewal keeps acquireTime and leaseTransitions; a change of holder (a released or
    expired Lease taken over) sets acquireTime and counts one more transition.
    """
    spec = spec or {}
    stamp = micro_time(now)
    transitions = spec.get("leaseTransitions")
    if not isinstance(transitions, int) or isinstance(transitions, bool) or transitions < 0:
        transitions = 0
    if spec and spec.get("holderIdentity") == identity and spec.get("acquireTime"):
        acquired = spec["acquireTime"]
    else:
        acquired = stamp
        if spec:  # an existing Lease changes holder; a new one starts at 0
            transitions += 1
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": lease_duration,
        "acquireTime": acquired,
        "renewTime": stamp,
        "leaseTransitions": transitions,
    }


def released(spec: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The spec a holder writes when it stops on purpose (client-go's ReleaseOnCancel).

    No holder, and a one-second duration: the other replicas take it at their next retry
    instead of waiting out the lease.
    """
    stamp = micro_time(now)
    return {
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": spec.get("leaseTransitions", 0),
    }


class Attempt(enum.Enum):
    """How one try to acquire or renew ended."""

    HELD = "held"  # the Lease is ours now
    TAKEN = "taken"  # someone else holds it, unexpired (or won the race for it)
    FAILED = "failed"  # the API server could not be asked (logged); nothing is known


class LeaseElection:
    """Competes for one Lease until `stop` is set; calls `on_started` / `on_stopped` on change.

    `run()` tries to acquire or renew every `retry_period` seconds. It stops leading when
    someone else holds the Lease, or when no renewal has succeeded for `renew_deadline`
    seconds (shorter than the lease, so it stands down before others may take over). Once
    `stop` is set it returns within one API request; if it was leading it first releases the
    Lease. Every wait is on `stop`, so nothing sleeps past it.
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: int,
        renew_deadline: int,
        retry_period: int,
        on_started: Callable[[], None],
        on_stopped: Callable[[], None],
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._on_started = on_started
        self._on_stopped = on_stopped
        #: One request may take at most this long: a renewal that cannot finish within the
        #: deadline is no renewal, and `stop` waits for at most one request.
        self.request_timeout = min(api.timeout, float(renew_deadline))
        # The Lease as our last successful write left it (its resourceVersion guards release).
        self._written: dict[str, Any] | None = None
        self._holder: str | None = None  # the holder last seen or written, for the log

    @property
    def path(self) -> str:
        """The Lease's API path."""
        return self._path(name=self.name)

    @property
    def lease(self) -> str:
        """`namespace/name`, as log lines name it."""
        return f"{self.namespace}/{self.name}"

    def _path(self, *, name: str | None = None) -> str:
        return resource_path(
            group="coordination.k8s.io",
            version="v1",
            resource="leases",
            namespace=self.namespace,
            name=name,
        )

    def run(self, stop: threading.Event) -> None:
        """Compete until `stop` is set; then release the Lease if this replica holds it."""
        leading = False
        renewed_at = 0.0  # time.monotonic() when the last successful attempt began
        try:
            while not stop.is_set():
                began = time.monotonic()
                attempt = self.try_acquire_or_renew(datetime.now(UTC))
                if attempt is Attempt.HELD:
                    renewed_at = began
                    if not leading:
                        leading = True
                        self._on_started()
                elif leading and (
                    attempt is Attempt.TAKEN or time.monotonic() - renewed_at >= self.renew_deadline
                ):
                    leading = False
                    self._written = None
                    self._on_stopped()
                stop.wait(self.retry_period)
        finally:
            if leading:
                self.release()
                self._on_stopped()

    def try_acquire_or_renew(self, now: datetime) -> Attempt:
        """One read and, when the Lease is free, expired or ours, one write making it ours."""
        try:
            current = self._api.request("GET", self.path, timeout=self.request_timeout)
        except ApiError as exc:
            if exc.status != 404:
                return self._failed("cannot read", exc)
            current = None
        if current is None:
            body: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": claimed(None, self.identity, self.lease_duration, now),
            }
            return self._write("POST", self._path(), body, "cannot create")
        spec = current.get("spec") or {}
        if not may_take(spec, self.identity, now):
            self._saw_holder(str(spec.get("holderIdentity")))
            return Attempt.TAKEN
        # The read metadata (its resourceVersion) makes the write conditional on no change.
        update = {**current, "spec": claimed(spec, self.identity, self.lease_duration, now)}
        return self._write("PUT", self.path, update, "cannot update")

    def _write(self, method: str, path: str, body: dict[str, Any], failure: str) -> Attempt:
        try:
            self._written = self._api.request(method, path, body=body, timeout=self.request_timeout)
        except ApiError as exc:
            if exc.status == 409:  # another replica wrote first: it won this round
                return Attempt.TAKEN
            return self._failed(failure, exc)
        self._holder = self.identity
        return Attempt.HELD

    def _saw_holder(self, holder: str) -> None:
        """Say who leads, once per change of holder (not every retry period)."""
        if holder != self._holder:
            self._holder = holder
            logger.info(
                "Lease %s is held by %s; following",
                self.lease,
                holder,
                extra={"lease": self.lease, "identity": self.identity, "holder": holder},
            )

    def _failed(self, what: str, exc: ApiError) -> Attempt:
        logger.warning(
            "%s Lease %s: %s; retrying in %ss",
            what,
            self.lease,
            exc,
            self.retry_period,
            extra={"lease": self.lease, "identity": self.identity},
        )
        return Attempt.FAILED

    def release(self) -> bool:
        """Write the Lease free (no holder, 1 s), if it is still as our last write left it.

        Whether it was released: not when another replica wrote it since (409) or the API
        server cannot be reached; the Lease then expires as it would after a crash.
        """
        if self._written is None:
            return False
        spec = self._written.get("spec") or {}
        update = {**self._written, "spec": released(spec, datetime.now(UTC))}
        self._written = None
        try:
            self._api.request("PUT", self.path, body=update, timeout=self.request_timeout)
        except ApiError as exc:
            logger.warning(
                "cannot release Lease %s: %s; it expires in %ss",
                self.lease,
                exc,
                self.lease_duration,
                extra={"lease": self.lease, "identity": self.identity},
            )
            return False
        logger.info(
            "released Lease %s: another replica may take it now",
            self.lease,
            extra={"lease": self.lease, "identity": self.identity},
        )
        return True
