"""One active sweeper: leader election on a Lease (`kube.leases`), re-checked before deletes,
stopped and handed over on SIGTERM."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.errors import ApiError, describe_error
from kaptain_warden.kube.leases import LeaseElection, expires_at
from kaptain_warden.sweeper.metrics import SweeperMetrics

__all__ = ["LeaderElector", "LeaseSettings"]

logger = logging.getLogger(__name__)

#: client-go refuses renew_deadline <= 1.2 x retry_period (its jitter factor); the same limit
#: here keeps every setting a mixed fleet accepts, and leaves room for more than one renewal
#: attempt before the deadline.
_RENEW_ATTEMPTS = 1.2


@dataclass(frozen=True)
class LeaseSettings:
    """The Lease the sweeper replicas compete for (coordination.k8s.io/v1).

    Defaults are client-go's (15 s / 10 s / 2 s). A leader that stops on SIGTERM releases the
    Lease and another replica takes it within about `retry_period`; a leader that dies without
    stopping is replaced once its Lease expires, within about `lease_duration` +
    `retry_period`. RBAC: get, create, update on `leases` in `namespace`.
    """

    namespace: str
    name: str
    identity: str
    lease_duration: int = 15
    renew_deadline: int = 10
    retry_period: int = 2

    def __post_init__(self) -> None:
        if self.retry_period < 1:
            raise ValueError("--retry-period must be at least 1 second")
        if self.renew_deadline <= _RENEW_ATTEMPTS * self.retry_period:
            raise ValueError("--renew-deadline must be more than 1.2 x --retry-period")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("--lease-duration must be more than --renew-deadline")


class LeaderElector:
    """Runs the election (`kube.leases.LeaseElection`) on a thread until `stop()`.

    `is_leader` follows the election's callbacks, which lag the Lease by up to a retry period,
    and a process paused longer than the lease may still believe it leads. So before each
    batch of deletes `check()` reads the Lease itself.

    The thread is a daemon only so that a wedged API request can never keep the process
    alive; `stop()` ends and joins it (the Lease released first when it leads), so nothing of
    it is left running, or logging, while the interpreter finalizes.
    """

    def __init__(
        self,
        api: KubeApi,
        settings: LeaseSettings,
        *,
        metrics: SweeperMetrics | None = None,
    ) -> None:
        self._api = api
        self.settings = settings
        self._metrics = metrics
        self._leading = threading.Event()
        self._stop = threading.Event()
        self._election = LeaseElection(
            api,
            namespace=settings.namespace,
            name=settings.name,
            identity=settings.identity,
            lease_duration=settings.lease_duration,
            renew_deadline=settings.renew_deadline,
            retry_period=settings.retry_period,
            on_started=self._started,
            on_stopped=self._stopped,
        )
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        if metrics is not None:
            metrics.leader.set(0)

    def start(self) -> LeaderElector:
        """Join the election in the background."""
        self._thread.start()
        return self

    def stop(self) -> bool:
        """Leave the election, releasing the Lease when leading; whether the thread ended.

        Returns within three API requests (the read and the write of the attempt in flight,
        then the release), each bounded by the election's request timeout.
        """
        self._stop.set()
        if not self._thread.is_alive():
            return True
        self._thread.join(3 * self._election.request_timeout + 1)
        return not self._thread.is_alive()

    def is_leader(self) -> bool:
        """What the election's callbacks last said."""
        return self._leading.is_set()

    def check(self) -> str | None:
        """None when the Lease is ours and unexpired right now; else why we must not delete."""
        if not self._leading.is_set():
            return "not the leader"
        s = self.settings
        try:
            lease = self._api.get(self._election.path)
        except ApiError as exc:
            return f"cannot read Lease {s.namespace}/{s.name}: {describe_error(exc)}"
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        if holder != s.identity:
            return f"Lease {s.namespace}/{s.name} is held by {holder!r}"
        expiry = expires_at(spec)
        if expiry is None:
            return f"Lease {s.namespace}/{s.name} has no readable renewTime/leaseDurationSeconds"
        if expiry <= datetime.now(UTC):
            return f"Lease {s.namespace}/{s.name} expired (last renewed {spec.get('renewTime')})"
        return None

    # -- the election thread ---------------------------------------------------------------

    def _run(self) -> None:
        s = self.settings
        while not self._stop.is_set():
            try:
                self._election.run(self._stop)
            except Exception:  # a bug, not the API server (that is retried inside): rejoin
                logger.exception(
                    "leader election failed; rejoining",
                    extra={"lease": f"{s.namespace}/{s.name}", "identity": s.identity},
                )
                self._stopped()
                self._stop.wait(s.retry_period)

    def _started(self) -> None:
        self._leading.set()
        if self._metrics is not None:
            self._metrics.leader.set(1)
        logger.info(
            "became the leader: this replica sweeps",
            extra={
                "identity": self.settings.identity,
                "lease": f"{self.settings.namespace}/{self.settings.name}",
            },
        )

    def _stopped(self) -> None:
        was_leading = self._leading.is_set()
        self._leading.clear()
        if self._metrics is not None:
            self._metrics.leader.set(0)
        if was_leading:
            logger.warning(
                "stopped leading: this replica no longer sweeps",
                extra={
                    "identity": self.settings.identity,
                    "lease": f"{self.settings.namespace}/{self.settings.name}",
                },
            )
