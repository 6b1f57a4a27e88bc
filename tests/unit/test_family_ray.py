"""Tier 1: KubeRay's RayJob and RayCluster in the registry (ray-operator v1.6.0 status shapes)."""

from datetime import UTC, datetime
from typing import Any

import pytest

from kaptain_warden.policies.completion import finished_at
from kaptain_warden.policies.kinds import registered_kind
from kaptain_warden.policies.native_ttl import native_location, native_ttl
from kaptain_warden.policies.secret_refs import secret_references

END = "2026-05-01T10:00:00Z"
ENDED = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
RAYJOB = registered_kind("ray.io/v1", "RayJob")
RAYCLUSTER = registered_kind("ray.io/v1", "RayCluster")


def rayjob(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "ray.io/v1", "kind": "RayJob", "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "endTime": END}, ENDED),
        ({"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "endTime": END}, ENDED),
        # Failed before the job ran (submission, deadline): no jobStatus, still finished.
        ({"jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded", "endTime": END}, ENDED),
        # The Ray job is done, its submitter not yet: the deployment still runs.
        ({"jobDeploymentStatus": "Running", "jobStatus": "SUCCEEDED"}, None),
        ({"jobDeploymentStatus": "Initializing"}, None),
        ({"jobDeploymentStatus": "ValidationFailed", "reason": "ValidationFailed"}, None),
        ({"jobDeploymentStatus": "Suspended"}, None),
        # Retrying after a failure within backoffLimit: the old endTime does not count.
        ({"jobDeploymentStatus": "Retrying", "jobStatus": "FAILED", "endTime": END}, None),
        # Terminal but no time (never written so by the operator): no clock starts.
        ({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}, None),
        ({"jobDeploymentStatus": "Complete", "endTime": "yesterday"}, None),
        ({"jobDeploymentStatus": ["Complete"], "endTime": END}, None),
        ({}, None),
    ],
)
def test_a_rayjob_finishes_with_its_deployment_status_at_its_end_time(status, expected):
    assert finished_at(rayjob(status)) == expected


def test_any_served_version_of_ray_io_reads_the_same_status():
    obj = rayjob({"jobDeploymentStatus": "Complete", "endTime": END})
    assert finished_at({**obj, "apiVersion": "ray.io/v1alpha1"}) == ENDED


def test_a_raycluster_never_finishes():
    assert RAYCLUSTER is not None and RAYCLUSTER.finish is None
    for state in ("ready", "suspended", "failed"):
        cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "status": {"state": state}}
        assert finished_at(cluster) is None


@pytest.mark.parametrize(
    "spec",
    [{}, {"shutdownAfterJobFinishes": True}, {"ttlSecondsAfterFinished": 0}],
)
def test_the_warden_never_writes_kuberays_cluster_shutdown_ttl(spec):
    # ttlSecondsAfterFinished times the RayCluster's shutdown, not the RayJob's deletion.
    assert RAYJOB is not None and RAYJOB.native_ttl is None
    assert native_ttl(rayjob(**spec), 3600) == ()
    assert native_location(rayjob(**spec)) is None


def template(secret: str) -> dict[str, Any]:
    env = {"name": "T", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}
    return {"spec": {"containers": [{"name": "ray", "env": [env]}]}}


def cluster(head: str, *workers: str) -> dict[str, Any]:
    return {
        "headGroupSpec": {"template": template(head)},
        "workerGroupSpecs": [{"groupName": w, "template": template(w)} for w in workers],
    }


def test_a_live_rayjob_holds_the_secrets_of_every_pod_it_can_start():
    assert RAYJOB is not None
    job = rayjob(
        {"jobDeploymentStatus": "Running"},
        rayClusterSpec=cluster("head", "cpu", "gpu"),
        submitterPodTemplate=template("submitter"),
    )
    assert secret_references(job, RAYJOB) == {"head", "cpu", "gpu", "submitter"}
    # A worker group list that is not a list names nothing (and breaks nothing).
    broken = rayjob(rayClusterSpec={"workerGroupSpecs": {"cpu": {"template": template("x")}}})
    assert secret_references(broken, RAYJOB) == frozenset()


def test_a_finished_rayjob_holds_nothing():
    assert RAYJOB is not None
    done = rayjob(
        {"jobDeploymentStatus": "Complete", "endTime": END}, rayClusterSpec=cluster("h", "w")
    )
    assert secret_references(done, RAYJOB) == frozenset()


def test_a_raycluster_holds_the_secrets_of_its_head_and_worker_groups():
    assert RAYCLUSTER is not None
    obj = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "spec": cluster("head", "a", "b")}
    assert secret_references(obj, RAYCLUSTER) == {"head", "a", "b"}
