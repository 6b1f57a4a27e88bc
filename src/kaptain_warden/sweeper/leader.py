"""One active sweeper: the client's leader election on a Lease, re-checked before deletes."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import resource_path
from kaptain_warden.kube.errors import ApiError, describe_error
from kaptain_warden.kube.leases import JITTER, quiet_routine_election_lines, run_election
from kaptain_warden.policies.timestamps import parse_time
from kaptain_warden.sweeper.metrics import SweeperMetrics

__all__ = ["LeaderElector", "LeaseSettings"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseSettings:
    """The Lease the sweeper replicas compete for (coordination.k8s.io/v1).

    Defaults are client-go's (15 s / 10 s / 2 s): a dead leader is replaced within about
    `lease_duration` + `retry_period`. RBAC: get, create, update on `leases` in `namespace`.
    """

    namespace: str
    name: str
    identity: str
    lease_duration: int = 15
    renew_deadline: int = 10
    retry_period: int = 2

    def __post_init__(self) -> None:
        # The client's Config calls sys.exit() on these; say what is wrong instead.
        if self.retry_period < 1:
            raise ValueError("--retry-period must be at least 1 second")
        if self.renew_deadline <= JITTER * self.retry_period:
            raise ValueError("--renew-deadline must be more than 1.2 x --retry-period")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("--lease-duration must be more than --renew-deadline")


class LeaderElector:
    """Runs the client's `LeaderElection` on a daemon thread, forever.

    `is_leader` follows the client's callbacks. They are not enough to act on: the client
    does not stop the leading callback when renewal fails (kubernetes.leaderelection), and a
    process paused longer than the lease may still believe it leads. So before each batch
    of deletes `check()` reads the Lease itself.
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
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        if metrics is not None:
            metrics.leader.set(0)

    def start(self) -> LeaderElector:
        """Join the election in the background."""
        quiet_routine_election_lines()
        self._thread.start()
        return self

    def is_leader(self) -> bool:
        """What the client's callbacks last said."""
        return self._leading.is_set()

    def check(self) -> str | None:
        """None when the Lease is ours and unexpired right now; else why we must not delete."""
        if not self._leading.is_set():
            return "not the leader"
        s = self.settings
        path = resource_path(
            group="coordination.k8s.io",
            version="v1",
            resource="leases",
            namespace=s.namespace,
            name=s.name,
        )
        try:
            lease = self._api.get(path)
        except ApiError as exc:
            return f"cannot read Lease {s.namespace}/{s.name}: {describe_error(exc)}"
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        if holder != s.identity:
            return f"Lease {s.namespace}/{s.name} is held by {holder!r}"
        renewed = parse_time(spec.get("renewTime"))
        duration = spec.get("leaseDurationSeconds")
        if renewed is None or not isinstance(duration, int):
            return f"Lease {s.namespace}/{s.name} has no readable renewTime/leaseDurationSeconds"
        if renewed + timedelta(seconds=duration) <= datetime.now(UTC):
            return f"Lease {s.namespace}/{s.name} expired (last renewed {spec.get('renewTime')})"
        return None

    # -- the election thread ---------------------------------------------------------------

    def _run(self) -> None:
        s = self.settings
        while True:
            try:
                # Returns when this replica led and then failed to renew in time.
                run_election(
                    self._api,
                    namespace=s.namespace,
                    name=s.name,
                    identity=s.identity,
                    lease_duration=s.lease_duration,
                    renew_deadline=s.renew_deadline,
                    retry_period=s.retry_period,
                    on_started=self._started,
                    on_stopped=self._stopped,
                )
            except Exception as exc:  # e.g. the API server unreachable: stand down, rejoin
                logger.warning(
                    "leader election failed (%s); rejoining",
                    describe_error(exc),
                    extra={"lease": f"{s.namespace}/{s.name}"},
                )
                self._stopped()
                threading.Event().wait(s.retry_period)

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
