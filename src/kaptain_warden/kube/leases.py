"""Leader election on a coordination.k8s.io/v1 Lease, through the Kubernetes client's own
`leaderelection` (the sweeper decides what leading means; this only runs the election)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from kubernetes import client as k8s
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from kaptain_warden.kube.api import KubeApi

__all__ = ["JITTER", "RoutineElectionFilter", "quiet_routine_election_lines", "run_election"]

#: The client's `Config` demands renew_deadline > JITTER x retry_period (its jitter factor).
JITTER = 1.2
# What the client's election logs at INFO on every retry period (every 2 s, on every replica);
# the caller's own lines say who leads. Its failures ("Failed to create lock as ...") still pass.
_ROUTINE_ELECTION_LINES = (
    "is a follower",
    "yet to finish lease_duration",
    "successfully acquired lease",
    "is trying to create a lock",
    "has entered renew loop",
    "stopped leading",
)


class RoutineElectionFilter(logging.Filter):
    """Drops the client's per-retry chatter, keeps what says something went wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(line in message for line in _ROUTINE_ELECTION_LINES)


def quiet_routine_election_lines() -> None:
    """Install `RoutineElectionFilter` on the client's election logger (once)."""
    election_log = logging.getLogger("leaderelection")
    if not any(isinstance(f, RoutineElectionFilter) for f in election_log.filters):
        election_log.addFilter(RoutineElectionFilter())


def run_election(
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
    """Compete for the Lease; returns when this replica led and then failed to renew in time.

    Raises what the client raises (the API server unreachable, say): the caller stands down
    and rejoins.
    """
    lock = LeaseLock(name, namespace, identity)
    # LeaseLock builds its API object from the default configuration; use the door's.
    lock.api_instance = k8s.CoordinationV1Api(api.api_client)
    config = electionconfig.Config(
        lock=lock,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
        onstarted_leading=on_started,
        onstopped_leading=on_stopped,
    )
    leaderelection.LeaderElection(config).run()
