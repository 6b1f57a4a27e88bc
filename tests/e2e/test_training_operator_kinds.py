"""Tier 3: training-operator v1.9's MPIJob, XGBoostJob, PaddleJob and JAXJob, on their upstream
CRDs (hack/upstream.tsv), through the real admission server and the sweeper.

A notebook creates each job; the warden stamps it, mirrors `ttlAfterFinished` into the CRD's
`spec.runPolicy.ttlSecondsAfterFinished` (which the CRD's schema keeps), and holds the Secret its
replica templates reference while it runs. Its status is then written through the status
subresource as the training-operator writes it (kubeflow/training-operator v1.9.0,
pkg/apis/kubeflow.org/v1 common_types.go JobStatus; pkg/util/status.go UpdateJobConditions:
Created, Running turned False, Succeeded True, and completionTime), and the sweeper deletes the
job 7 days after that condition's lastTransitionTime, not before.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from kaptain_warden.kube.client import request_json
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.policies.timestamps import format_time
from kaptain_warden.testing.stack import notebook_user
from sweeper_kit import now, policy_for_tests, sweeper

pytestmark = pytest.mark.e2e

KEYS = MetadataKeys()
POLICY = policy_for_tests()
WEEK = timedelta(days=7)

#: kind -> (plural, replica specs field, replica types) as the v1.9 CRDs name them.
JOBS = {
    "MPIJob": ("mpijobs", "mpiReplicaSpecs", ("Launcher", "Worker")),
    "XGBoostJob": ("xgboostjobs", "xgbReplicaSpecs", ("Master", "Worker")),
    "PaddleJob": ("paddlejobs", "paddleReplicaSpecs", ("Master", "Worker")),
    "JAXJob": ("jaxjobs", "jaxReplicaSpecs", ("Worker",)),
}


def job_path(kind: str, namespace: str, name: str = "") -> str:
    path = f"/apis/kubeflow.org/v1/namespaces/{namespace}/{JOBS[kind][0]}"
    return f"{path}/{name}" if name else path


def job_body(kind: str, name: str, secret: str) -> dict[str, Any]:
    _, replica_specs, types = JOBS[kind]
    container = {
        "name": "main",
        "image": "registry.example/train:1",
        "env": [{"name": "S3", "valueFrom": {"secretKeyRef": {"name": secret, "key": "key"}}}],
    }
    replicas = {
        t: {"replicas": 1, "template": {"spec": {"containers": [container]}}} for t in types
    }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {replica_specs: replicas},
    }


def training_operator_status(finished: str) -> dict[str, Any]:
    """The JobStatus the training-operator writes when a job ends at `finished`."""
    started = format_time(now() - timedelta(minutes=30))
    return {
        "startTime": started,
        "completionTime": finished,
        "lastReconcileTime": finished,
        "conditions": [
            {
                "type": "Created",
                "status": "True",
                "reason": "JobCreated",
                "message": "job is created.",
                "lastUpdateTime": started,
                "lastTransitionTime": started,
            },
            {
                "type": "Running",
                "status": "False",
                "reason": "JobRunning",
                "message": "job is running.",
                "lastUpdateTime": finished,
                "lastTransitionTime": finished,
            },
            {
                "type": "Succeeded",
                "status": "True",
                "reason": "JobSucceeded",
                "message": "job successfully completed.",
                "lastUpdateTime": finished,
                "lastTransitionTime": finished,
            },
        ],
        "replicaStatuses": {"Worker": {"succeeded": 1}},
    }


@pytest.mark.parametrize("kind", sorted(JOBS))
def test_a_notebooks_training_job_is_stamped_holds_its_secret_and_goes_a_week_after_it_ends(
    notebook, kube_admin, profile, kind
):
    secret = f"s3-{kind.lower()}"
    request_json(
        notebook,
        "POST",
        f"/api/v1/namespaces/{profile}/secrets",
        body={"metadata": {"name": secret}, "type": "Opaque", "stringData": {"key": "k"}},
    )
    name = f"train-{kind.lower()}"
    created = request_json(
        notebook, "POST", job_path(kind, profile), body=job_body(kind, name, secret)
    )
    assert created["metadata"]["labels"][KEYS.rule] == "training-jobs"
    assert created["metadata"]["annotations"][KEYS.owner] == notebook_user(profile)
    assert created["metadata"]["annotations"][KEYS.ttl_after_finished] == "7d"
    # The mirror survives the CRD's pruning: the training-operator would act on it.
    assert created["spec"]["runPolicy"]["ttlSecondsAfterFinished"] == int(WEEK.total_seconds())

    # Running, past the Secret's 24h TTL: the replica template keeps the Secret.
    later = now() + timedelta(days=2)
    report = sweeper(kube_admin, POLICY, profile).run_once(now=later)
    decided = {(e.kind, e.name): e for e in report.entries}
    assert decided[("Secret", secret)].action == "keep"
    assert f"in use by {kind}/{name}" in decided[("Secret", secret)].reason
    assert decided[(kind, name)].action == "keep"

    finished = now()
    request_json(
        kube_admin,
        "PATCH",
        job_path(kind, profile, name) + "/status",
        body={"status": training_operator_status(format_time(finished))},
        content_type="application/merge-patch+json",
    )
    stored = request_json(kube_admin, "GET", job_path(kind, profile, name))["status"]
    assert stored["conditions"][-1]["type"] == "Succeeded"  # kept by the CRD's schema
    assert stored["completionTime"] == format_time(finished)

    # Finished: it holds nothing; it goes 7 days after the Succeeded condition, not before.
    early = sweeper(kube_admin, POLICY, profile).run_once(now=finished + WEEK - timedelta(hours=1))
    decided = {(e.kind, e.name): e for e in early.entries}
    assert decided[(kind, name)].action == "keep"
    assert decided[(kind, name)].expires_at == finished + WEEK
    assert decided[("Secret", secret)].outcome == "deleted"

    due = sweeper(kube_admin, POLICY, profile).run_once(now=finished + WEEK + timedelta(minutes=1))
    decided = {(e.kind, e.name): e for e in due.entries}
    assert decided[(kind, name)].outcome == "deleted", decided[(kind, name)].reason
    assert f"{KEYS.ttl_after_finished}=7d ran out" in decided[(kind, name)].reason
