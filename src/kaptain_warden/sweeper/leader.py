"""One active sweeper: the client's leader election on a Lease, re-checked before deletes."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kubernetes import client as k8s
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from kaptain_warden.kube.client import resource_path
from kaptain_warden.policies.timestamps import parse_time
from kaptain_warden.sweeper.api import API_ERRORS, KubeApi, describe_error
from kaptain_warden.sweeper.metrics import SweeperMetrics

__all__ = ["LeaderElector", "LeaseSettings"]

logger = logging.getLogger(__name__)

# The client's `Config` demands renew_deadline > 1.2 x retry_period (its jitter factor).
_JITTER = 1.2
# What the client's election logs at INFO on every retry period (every 2 s, on every replica);
# our own lines say who leads. Its failures ("Failed to create lock as ...") still pass.
_ROUTINE_ELECTION_LINES = (
    "is a follower",
    "yet to finish lease_duration",
    "successfully acquired lease",
    "is trying to create a lock",
    "has entered renew loop",
    "stopped leading",
)


class _RoutineElectionFilter(logging.Filter):
    """Drops the client's per-retry chatter, keeps what says something went wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(line in message for line in _ROUTINE_ELECTION_LINES)


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
        if self.renew_deadline <= _JITTER * self.retry_period:
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
        api_client: k8s.ApiClient,
        api: KubeApi,
        settings: LeaseSettings,
        *,
        metrics: SweeperMetrics | None = None,
    ) -> None:
        self._api_client = api_client
        self._api = api
        self.settings = settings
        self._metrics = metrics
        self._leading = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        if metrics is not None:
            metrics.leader.set(0)

    def start(self) -> LeaderElector:
        """Join the election in the background."""
        election_log = logging.getLogger("leaderelection")
        if not any(isinstance(f, _RoutineElectionFilter) for f in election_log.filters):
            election_log.addFilter(_RoutineElectionFilter())
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
        except API_ERRORS as exc:
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
            lock = LeaseLock(s.name, s.namespace, s.identity)
            # LeaseLock builds its API object from the default configuration; use ours.
            lock.api_instance = k8s.CoordinationV1Api(self._api_client)
            config = electionconfig.Config(
                lock=lock,
                lease_duration=s.lease_duration,
                renew_deadline=s.renew_deadline,
                retry_period=s.retry_period,
                onstarted_leading=self._started,
                onstopped_leading=self._stopped,
            )
            try:
                # Returns when this replica led and then failed to renew in time.
                leaderelection.LeaderElection(config).run()
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
