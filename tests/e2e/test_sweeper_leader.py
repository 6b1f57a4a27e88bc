"""Tier 3: two `kaptain-warden sweeper` processes, one leader; kill it and the other takes over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from kubernetes import client as k8s

from kaptain_warden.install.rbac import sweeper_cluster_rules, sweeper_lease_rules
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


def holder(kube_admin, namespace) -> str | None:
    try:
        lease = k8s.CoordinationV1Api(kube_admin).read_namespaced_lease(LEASE, namespace)
    except k8s.ApiException:
        return None
    return lease.spec.holder_identity


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

        # SIGTERM: the pass in progress completes, then the process exits cleanly.
        follower.process.send_signal(signal.SIGTERM)
        assert follower.process.wait(timeout=15) == 0
        messages = [line["msg"] for line in log_lines(follower.log_path.read_text())]
        assert "sweeper stopped between passes" in messages
    finally:
        for process in sweepers.values():
            process.stop()
