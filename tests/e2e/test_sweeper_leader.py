"""Tier 3: two `kaptain-warden sweeper` processes, one leader; kill it and the other takes over
once the Lease expires; stop it (SIGTERM) and it hands the Lease over at once, exiting 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubernetes import client as k8s

from kaptain_warden.install.rbac import sweeper_cluster_rules, sweeper_lease_rules
from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.leases import Attempt, LeaseElection
from polling import eventually
from sweeper_kit import (
    HOUR,
    body,
    create,
    exists,
    log_lines,
    now,
    policy_for_tests,
    write_policy,
)

pytestmark = pytest.mark.e2e

LEASE = "kaptain-warden-sweeper"
# Short, as the client allows (lease > renew deadline > 1.2 x retry period, all >= 1 s).
LEASE_ARGS = ("--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "1")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SweeperProcess:
    """One `kaptain-warden sweeper` subprocess with its log file and metrics port."""

    def __init__(
        self,
        identity: str,
        kubeconfig: Path,
        policy: Path,
        namespace: str,
        logs: Path,
        *extra: str,
    ):
        self.identity = identity
        self.port = free_port()
        self.log_path = logs / f"{identity}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kaptain_warden.cli",
                "sweeper",
                "--kubeconfig",
                str(kubeconfig),
                "--policy",
                str(policy),
                "--namespace",
                namespace,
                "--lease-namespace",
                namespace,
                "--lease-name",
                LEASE,
                *LEASE_ARGS,
                "--interval",
                "0.5",
                "--identity",
                identity,
                "--metrics-port",
                str(self.port),
                "--metrics-address",
                "127.0.0.1",
                "--log-format",
                "json",
                *extra,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def metric(self, name: str) -> float | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def healthz(self) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return int(r.status)
        except OSError:
            return None

    def deleted(self) -> set[str]:
        return {
            line["object"]
            for line in log_lines(self.log_path.read_text())
            if line.get("outcome") == "deleted"
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def sweeper_identity(control_plane, kube_admin, namespace, tmp_path):
    """A kubeconfig for a ServiceAccount bound to exactly the chart's sweeper rules."""
    rbac = k8s.RbacAuthorizationV1Api(kube_admin)
    name = f"sweeper-{uuid.uuid4().hex[:8]}"
    user = f"system:serviceaccount:{namespace}:{name}"
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    rbac.create_cluster_role(
        {"metadata": {"name": name}, "rules": sweeper_cluster_rules(policy_for_tests())}
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "subjects": subject,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
        }
    )
    rbac.create_namespaced_role(
        namespace, {"metadata": {"name": name}, "rules": sweeper_lease_rules(LEASE)}
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": name},
            "subjects": subject,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        },
    )
    groups = [
        "system:serviceaccounts",
        f"system:serviceaccounts:{namespace}",
        "system:authenticated",
    ]
    yield control_plane.write_kubeconfig(tmp_path / "sweeper.kubeconfig", user=user, groups=groups)
    rbac.delete_cluster_role_binding(name)
    rbac.delete_cluster_role(name)


def read_lease(kube_admin, namespace) -> k8s.V1Lease | None:
    try:
        return k8s.CoordinationV1Api(kube_admin).read_namespaced_lease(LEASE, namespace)
    except k8s.ApiException:
        return None


def holder(kube_admin, namespace) -> str | None:
    lease = read_lease(kube_admin, namespace)
    return None if lease is None else lease.spec.holder_identity


def test_one_leader_sweeps_and_another_takes_over_when_it_dies(
    kube_admin, namespace, sweeper_identity, tmp_path
):
    policy = write_policy(tmp_path / "policy.yaml")
    sweepers = {
        name: SweeperProcess(name, sweeper_identity, policy, namespace, tmp_path)
        for name in ("replica-a", "replica-b")
    }
    try:
        leader_name = eventually(
            lambda: holder(kube_admin, namespace), "a replica to take the Lease"
        )
        leader = sweepers[leader_name]
        (follower,) = [s for s in sweepers.values() if s is not leader]
        eventually(lambda: leader.metric("kaptain_warden_sweeper_leader") == 1.0, "leader metric")
        eventually(
            lambda: follower.metric("kaptain_warden_sweeper_leader") == 0.0, "follower metric"
        )
        assert leader.healthz() == follower.healthz() == 200

        # Only the leader sweeps.
        first = create(kube_admin, namespace, body("v1", "Secret", "first", expires=now() - HOUR))
        eventually(lambda: exists(kube_admin, namespace, first) is None, "the leader to delete it")
        eventually(lambda: "first" in leader.deleted(), "the leader's deletion log line")
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:  # never two leaders at once
            assert (leader.metric("kaptain_warden_sweeper_leader") or 0) + (
                follower.metric("kaptain_warden_sweeper_leader") or 0
            ) <= 1
            time.sleep(0.2)
        assert follower.deleted() == set()

        # Kill the leader outright: no chance to hand over. The other takes the Lease once it
        # expires (4 s), and sweeps from then on.
        killed_at = time.monotonic()
        os.killpg(leader.process.pid, signal.SIGKILL)
        leader.process.wait(timeout=10)
        eventually(
            lambda: holder(kube_admin, namespace) == follower.identity, "the takeover", timeout=20
        )
        takeover = time.monotonic() - killed_at
        assert takeover < 4 + 1 + 3  # lease duration + retry period + slack for a busy machine
        second = create(kube_admin, namespace, body("v1", "Secret", "second", expires=now() - HOUR))
        eventually(
            lambda: exists(kube_admin, namespace, second) is None, "the new leader to delete it"
        )
        # The delete call returns before its log line is written: wait for the line, too.
        eventually(lambda: follower.deleted() == {"second"}, "the new leader's deletion log line")
        assert follower.metric("kaptain_warden_sweeper_leader") == 1.0

        # SIGTERM: the pass in progress completes, the Lease is released, the process exits 0.
        follower.process.send_signal(signal.SIGTERM)
        assert follower.process.wait(timeout=15) == 0, follower.log_path.read_text()
        messages = [line["msg"] for line in log_lines(follower.log_path.read_text())]
        assert "sweeper stopped between passes" in messages
        assert holder(kube_admin, namespace) == ""
    finally:
        for process in sweepers.values():
            process.stop()


# A lease long enough that waiting it out cannot pass for a hand-over.
LONG_LEASE = ("--lease-duration", "30", "--renew-deadline", "20", "--retry-period", "1")


def test_sigterm_hands_the_lease_over_at_once_and_a_follower_just_leaves(
    kube_admin, namespace, sweeper_identity, tmp_path
):
    policy = write_policy(tmp_path / "policy.yaml")

    def replica(name: str) -> SweeperProcess:
        return SweeperProcess(name, sweeper_identity, policy, namespace, tmp_path, *LONG_LEASE)

    def following(replica: SweeperProcess, leader: SweeperProcess) -> bool:
        """Whether `replica` has read the Lease and found `leader` holding it."""
        return any(
            line.get("holder") == leader.identity and line["msg"].endswith("; following")
            for line in log_lines(replica.log_path.read_text())
        )

    sweepers = {name: replica(name) for name in ("replica-a", "replica-b")}
    try:
        leader = sweepers[eventually(lambda: holder(kube_admin, namespace), "a leader")]
        (follower,) = [s for s in sweepers.values() if s is not leader]
        eventually(lambda: following(follower, leader), "the other replica to follow")
        assert follower.metric("kaptain_warden_sweeper_leader") == 0.0

        # A follower stops: exit 0, and the Lease is untouched.
        before = read_lease(kube_admin, namespace)
        assert before is not None
        follower.process.send_signal(signal.SIGTERM)
        assert follower.process.wait(timeout=15) == 0, follower.log_path.read_text()
        after = read_lease(kube_admin, namespace)
        assert after is not None
        assert after.spec.holder_identity == leader.identity
        assert after.spec.lease_transitions == before.spec.lease_transitions
        assert not [
            line
            for line in log_lines(follower.log_path.read_text())
            if line["msg"].startswith("released Lease")
        ]

        # The leader stops: it releases the Lease, and a waiting replica takes it at its next
        # retry (1 s), not after the 30 s lease. 10 s leaves room for a loaded machine.
        sweepers["replica-c"] = successor = replica("replica-c")
        eventually(lambda: following(successor, leader), "replica-c to follow")
        stopped_at = time.monotonic()
        leader.process.send_signal(signal.SIGTERM)
        eventually(
            lambda: holder(kube_admin, namespace) == successor.identity,
            "replica-c to take the released Lease",
            timeout=30,
        )
        handover = time.monotonic() - stopped_at
        assert handover < 10, f"hand-over took {handover:.1f}s"
        assert leader.process.wait(timeout=15) == 0, leader.log_path.read_text()
        released = [line for line in log_lines(leader.log_path.read_text()) if line.get("lease")]
        assert any(line["msg"].startswith("released Lease") for line in released)
        taken = read_lease(kube_admin, namespace)
        assert taken is not None
        assert taken.spec.lease_transitions == after.spec.lease_transitions + 1
        assert taken.spec.lease_duration_seconds == 30
        eventually(lambda: successor.metric("kaptain_warden_sweeper_leader") == 1.0, "its metric")

        # The last replica stops: nobody is left to take it, so the release shows.
        successor.process.send_signal(signal.SIGTERM)
        assert successor.process.wait(timeout=15) == 0, successor.log_path.read_text()
        free = read_lease(kube_admin, namespace)
        assert free is not None
        assert free.spec.holder_identity == ""
        assert free.spec.lease_duration_seconds == 1
    finally:
        for process in sweepers.values():
            process.stop()


@pytest.mark.parametrize("lease_exists", [False, True], ids=["created", "expired"])
def test_electors_racing_for_one_lease_yield_exactly_one_leader(
    kube_admin, namespace, lease_exists
):
    """Several electors read the Lease at once (absent, or expired) and all write: the API
    server accepts exactly one write, the others get 409 Conflict and follow."""
    api = KubeApi(kube_admin)
    if lease_exists:
        # Raw JSON: the client's models would rewrite the MicroTimes in a form the API refuses.
        api.request(
            "POST",
            f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
            body={
                "metadata": {"name": LEASE},
                "spec": {
                    "holderIdentity": "gone",
                    "leaseDurationSeconds": 15,
                    "renewTime": "2020-01-01T00:00:00.000000Z",
                    "acquireTime": "2020-01-01T00:00:00.000000Z",
                    "leaseTransitions": 2,
                },
            },
        )
    electors = [
        LeaseElection(
            api,
            namespace=namespace,
            name=LEASE,
            identity=f"elector-{i}",
            lease_duration=15,
            renew_deadline=10,
            retry_period=2,
            on_started=lambda: None,
            on_stopped=lambda: None,
        )
        for i in range(6)
    ]
    # Everyone has read the Lease before anyone writes.
    read_all = threading.Barrier(len(electors))
    original = api.request

    def request(method, path, **kwargs):
        if method != "GET":
            return original(method, path, **kwargs)
        try:
            return original(method, path, **kwargs)
        finally:
            read_all.wait(timeout=30)

    api.request = request
    with ThreadPoolExecutor(len(electors)) as pool:
        attempts = list(pool.map(lambda e: e.try_acquire_or_renew(datetime.now(UTC)), electors))
    assert attempts.count(Attempt.HELD) == 1, attempts
    assert attempts.count(Attempt.TAKEN) == len(electors) - 1, attempts
    winner = electors[attempts.index(Attempt.HELD)].identity
    lease = read_lease(kube_admin, namespace)
    assert lease is not None
    assert lease.spec.holder_identity == winner
    assert lease.spec.lease_transitions == (3 if lease_exists else 0)
