"""Tier 3: KubeRay's RayJob and RayCluster (`ray.io/v1`) on their upstream CRDs
(github.com/ray-project/kuberay/ray-operator v1.6.0, config/crd/bases/), with the webhooks and
the sweeper.

No KubeRay operator runs here. Where the operator acts, the test sends what it sends, from
ray-operator v1.6.0:
- status: apis/ray/v1/rayjob_types.go (RayJobStatus) as controllers/ray/rayjob_controller.go
  writes it: `initRayJobStatusIfNeed` (Initializing, startTime, the cluster's name),
  `checkJobStatus`-time updates (jobStatus from the dashboard; jobDeploymentStatus Complete or
  Failed only once the submitter finished too, reason AppFailed), `updateRayJobStatus` (endTime
  stamped when jobDeploymentStatus turns Complete or Failed);
- the RayCluster a RayJob runs on: `constructRayClusterForRayJob` (the RayJob's labels and
  annotations copied, `ray.io/originated-from-*` labels, a controller ownerReference), created
  by the operator's own identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from kubernetes import client as k8s

from family_kit import (
    assert_kept_as_written,
    decisions,
    family_crds,
    grant_controller,
    later,
    path,
    post,
    sweep_at,
    write_status,
)
from kaptain_warden.kube.client import get_json
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.policies.owner import owner_label_value
from kaptain_warden.policies.timestamps import format_time
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.stack import notebook_user
from sweeper_kit import HOUR, now

pytestmark = pytest.mark.e2e

KEYS = MetadataKeys()
RAY = "ray.io/v1"
OPERATOR = "system:serviceaccount:ray-system:kuberay-operator"


@pytest.fixture(scope="module", autouse=True)
def ray_crds(kube_admin: k8s.ApiClient) -> Iterator[list[str]]:
    with family_crds(kube_admin, "github.com/ray-project/kuberay/ray-operator") as names:
        yield names


def pod_template(*, env: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "ray", "image": "rayproject/ray:2.46.0"}
    if env:
        container["env"] = env
    return {"spec": {"containers": [container], **spec}}


def secret_env(secret: str) -> list[dict[str, Any]]:
    return [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}]


def cluster_spec(
    *, head: dict[str, Any] | None = None, workers: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A RayClusterSpec: a head group and worker groups (a list, each with its own template)."""
    groups = workers or [pod_template()]
    return {
        "rayVersion": "2.46.0",
        "headGroupSpec": {"rayStartParams": {}, "template": head or pod_template()},
        "workerGroupSpecs": [
            {
                "groupName": f"group-{index}",
                "replicas": 1,
                "minReplicas": 1,
                "maxReplicas": 1,
                "rayStartParams": {},
                "template": template,
            }
            for index, template in enumerate(groups)
        ],
    }


def rayjob(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": RAY,
        "kind": "RayJob",
        "metadata": {"name": name},
        "spec": {
            "entrypoint": "python train.py",
            "rayClusterSpec": spec.pop("rayClusterSpec", cluster_spec()),
            **spec,
        },
    }


def raycluster(name: str, **metadata: Any) -> dict[str, Any]:
    spec = metadata.pop("spec", cluster_spec())
    return {
        "apiVersion": RAY,
        "kind": "RayCluster",
        "metadata": {"name": name, **metadata},
        "spec": spec,
    }


def rayjob_status(
    name: str, namespace: str, deployment: str, job: str, *, ended: datetime | None = None
) -> dict[str, Any]:
    """RayJobStatus as the operator leaves it: started an hour before `ended` (or now), its
    cluster `<name>-<5 random letters>` ready, and endTime only once Complete or Failed."""
    started = (ended or now()) - HOUR
    cluster = f"{name}-x7k2p"
    status: dict[str, Any] = {
        "jobId": f"{name}-abcde",
        "rayClusterName": cluster,
        "dashboardURL": f"{cluster}-head-svc.{namespace}.svc.cluster.local:8265",
        "jobDeploymentStatus": deployment,
        "startTime": format_time(started),
        "rayJobInfo": {"startTime": format_time(started)},
        "rayClusterStatus": {
            "state": "ready",
            "readyWorkerReplicas": 1,
            "availableWorkerReplicas": 1,
            "desiredWorkerReplicas": 1,
            "minWorkerReplicas": 1,
            "maxWorkerReplicas": 1,
            "head": {"podName": f"{cluster}-head-q9w8e", "serviceName": f"{cluster}-head-svc"},
        },
        "observedGeneration": 1,
        # The CRD defaults both counters to 0; the operator counts once the job ended.
        "succeeded": 0,
        "failed": 0,
    }
    if job:  # JobStatusNew is "", which omitempty leaves out
        status["jobStatus"] = job
    if ended is not None:
        status |= {
            "endTime": format_time(ended),
            "rayJobInfo": {"startTime": format_time(started), "endTime": format_time(ended)},
            "succeeded": 1 if deployment == "Complete" else 0,
            "failed": 1 if deployment == "Failed" else 0,
        }
        if deployment == "Failed":
            status |= {"reason": "AppFailed", "message": "Job entrypoint command failed"}
    return status


def test_a_notebook_rayjob_is_stamped_and_its_cluster_shutdown_ttl_is_left_alone(
    notebook: k8s.ApiClient, profile: str
) -> None:
    jobs = path(RAY, "rayjobs", profile)
    user = notebook_user(profile)
    plain = post(notebook, jobs, rayjob("plain"))
    shutdown = post(notebook, jobs, rayjob("shutdown", shutdownAfterJobFinishes=True))
    for created in (plain, shutdown):
        labels, annotations = created["metadata"]["labels"], created["metadata"]["annotations"]
        assert labels[KEYS.managed] == "true"
        assert labels[KEYS.rule] == "ray-jobs"
        assert labels[KEYS.owner] == owner_label_value(user)
        assert annotations[KEYS.owner] == user
        assert annotations[KEYS.ttl_after_finished] == "7d"
        # KubeRay's ttlSecondsAfterFinished times the RayCluster's shutdown, not the RayJob's
        # deletion, and a value without shutdownAfterJobFinishes makes the operator refuse the
        # job (ValidationFailed): the warden leaves it alone. The CRD defaults it to 0 ("shut
        # down right away") before any webhook sees the object, so it is never unset here.
        assert created["spec"]["ttlSecondsAfterFinished"] == 0
    assert "shutdownAfterJobFinishes" not in plain["spec"]
    assert shutdown["spec"]["shutdownAfterJobFinishes"] is True


def test_the_cluster_kuberay_makes_for_a_rayjob_takes_its_owner_not_its_user_keys(
    notebook: k8s.ApiClient,
    kube_admin: k8s.ApiClient,
    control_plane: ControlPlane,
    profile: str,
) -> None:
    job = post(notebook, path(RAY, "rayjobs", profile), rayjob("train"))
    grant_controller(kube_admin, profile, OPERATOR, "ray.io", ["rayjobs", "rayclusters"])
    meta = job["metadata"]
    made = raycluster(
        "train-x7k2p",
        labels={
            **meta["labels"],
            "ray.io/originated-from-cr-name": "train",
            "ray.io/originated-from-crd": "RayJob",
            "ray.io/job-submission-mode": "K8sJobMode",
        },
        annotations=dict(meta["annotations"]),
        ownerReferences=[
            {
                "apiVersion": RAY,
                "kind": "RayJob",
                "name": "train",
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
        spec=job["spec"]["rayClusterSpec"],
    )
    with control_plane.impersonating_api_client(OPERATOR) as operator:
        cluster = post(operator, path(RAY, "rayclusters", profile), made)
    labels, annotations = cluster["metadata"]["labels"], cluster["metadata"]["annotations"]
    assert labels[KEYS.rule] == "ray-clusters"
    assert labels[KEYS.owner] == owner_label_value(notebook_user(profile))
    assert annotations[KEYS.owner] == notebook_user(profile)
    # The RayJob's ttl-after-finished, copied by the operator, is not the cluster's: a cluster
    # never finishes, and its rule sets no TTL.
    assert KEYS.ttl_after_finished not in annotations
    assert KEYS.expires_at not in annotations
    assert labels["ray.io/originated-from-crd"] == "RayJob"


def test_a_rayjob_finishes_when_its_deployment_status_does(
    notebook: k8s.ApiClient, kube_admin: k8s.ApiClient, profile: str
) -> None:
    jobs = path(RAY, "rayjobs", profile)
    ended = now()
    states = {
        # name: (jobDeploymentStatus, jobStatus, finished)
        "succeeded": ("Complete", "SUCCEEDED", True),
        "failed": ("Failed", "FAILED", True),
        "running": ("Running", "RUNNING", False),
        # The Ray job is done, its submitter not yet: KubeRay keeps the deployment Running.
        "submitter-busy": ("Running", "SUCCEEDED", False),
        "initializing": ("Initializing", "", False),
        # The operator refused the spec; it never runs, and never finishes either.
        "invalid": ("ValidationFailed", "", False),
    }
    for name, (deployment, job, finished) in states.items():
        post(notebook, jobs, rayjob(name))
        status = rayjob_status(name, profile, deployment, job, ended=ended if finished else None)
        if deployment == "ValidationFailed":
            status = {
                "jobDeploymentStatus": deployment,
                "reason": "ValidationFailed",
                "message": "The RayJob spec is invalid: a RayJob with shutdownAfterJobFinishes "
                "set to false cannot have TTLSecondsAfterFinished",
                "succeeded": 0,
                "failed": 0,
            }
        assert_kept_as_written(write_status(kube_admin, f"{jobs}/{name}", status), status)

    soon = decisions(sweep_at(kube_admin, profile, later(6), dry_run=True))
    assert {k: a for k, (a, _) in soon.items()} == {f"RayJob/{n}": "keep" for n in states}

    due = decisions(sweep_at(kube_admin, profile, later(8), dry_run=True))
    assert {k: a for k, (a, _) in due.items()} == {
        f"RayJob/{n}": "delete" if finished else "keep" for n, (_, _, finished) in states.items()
    }
    for name, (_, _, finished) in states.items():
        if not finished:
            assert "not finished" in due[f"RayJob/{name}"][1], due[f"RayJob/{name}"]

    report = sweep_at(kube_admin, profile, later(8), dry_run=False)
    assert {e.name for e in report.entries if e.outcome == "deleted"} == {"succeeded", "failed"}
    remaining = {o["metadata"]["name"] for o in get_json(kube_admin, jobs)["items"]}
    assert remaining == {n for n, (_, _, finished) in states.items() if not finished}


def test_secrets_a_live_rayjob_or_raycluster_names_are_kept(
    notebook: k8s.ApiClient, kube_admin: k8s.ApiClient, profile: str
) -> None:
    secrets = f"/api/v1/namespaces/{profile}/secrets"
    names = ("second-worker", "submitter", "cluster-head", "finished-job", "unused")
    for name in names:
        post(
            notebook,
            secrets,
            {"metadata": {"name": name}, "type": "Opaque", "stringData": {"token": "t"}},
        )
    jobs, clusters = path(RAY, "rayjobs", profile), path(RAY, "rayclusters", profile)
    # Only the second worker group names it: the list is walked, not its first item alone.
    post(
        notebook,
        jobs,
        rayjob(
            "live",
            rayClusterSpec=cluster_spec(
                workers=[pod_template(), pod_template(env=secret_env("second-worker"))]
            ),
            submitterPodTemplate=pod_template(env=secret_env("submitter"), restartPolicy="Never"),
        ),
    )
    write_status(kube_admin, f"{jobs}/live", rayjob_status("live", profile, "Running", "RUNNING"))
    post(
        notebook,
        clusters,
        raycluster(
            "interactive",
            spec=cluster_spec(head=pod_template(imagePullSecrets=[{"name": "cluster-head"}])),
        ),
    )
    post(
        notebook,
        jobs,
        rayjob(
            "done",
            rayClusterSpec=cluster_spec(head=pod_template(env=secret_env("finished-job"))),
        ),
    )
    write_status(
        kube_admin,
        f"{jobs}/done",
        rayjob_status("done", profile, "Complete", "SUCCEEDED", ended=now()),
    )

    # Two days on, every Secret's 24h TTL has passed; no RayJob is due yet.
    report = decisions(sweep_at(kube_admin, profile, later(2), dry_run=True))
    secret = {name: report[f"Secret/{name}"] for name in names}
    assert secret["second-worker"][0] == "keep"
    assert "in use by RayJob/live" in secret["second-worker"][1]
    assert secret["submitter"][0] == "keep"
    assert "in use by RayJob/live" in secret["submitter"][1]
    assert secret["cluster-head"][0] == "keep"
    assert "in use by RayCluster/interactive" in secret["cluster-head"][1]
    # A finished RayJob starts no pod again: it holds nothing.
    assert secret["finished-job"][0] == "delete"
    assert secret["unused"][0] == "delete"
    assert report["RayCluster/interactive"][0] == "keep"
