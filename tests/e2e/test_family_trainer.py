"""Tier 3: Kubeflow Trainer v2's TrainJob (`trainer.kubeflow.org/v1alpha1`) on its upstream CRD
(github.com/kubeflow/trainer/v2 v2.3.0, manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml),
with the webhooks and the sweeper.

No Trainer controller runs here. The status each test writes is what trainer v2.3.0 writes:
pkg/apis/trainer/v1alpha1/trainjob_types.go (TrainJobStatus: `metav1.Condition`s Complete,
Failed, Suspended; jobsStatus per replicated job) as pkg/runtime/framework/plugins/jobset/
jobset.go `Status` fills it: the JobSet's Completed or Failed condition copied under the
TrainJob's type, its reason and message the JobSet's (sigs.k8s.io/jobset v0.12.0
pkg/constants: AllJobsCompleted, FailedJobs); pkg/util/trainjob IsTrainJobFinished reads
Complete or Failed True. TrainJob has no TTL field of its own.
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
from kaptain_warden.testing.stack import notebook_user
from sweeper_kit import HOUR, now

pytestmark = pytest.mark.e2e

KEYS = MetadataKeys()
TRAINER = "trainer.kubeflow.org/v1alpha1"


@pytest.fixture(scope="module", autouse=True)
def trainer_crds(kube_admin: k8s.ApiClient) -> Iterator[list[str]]:
    with family_crds(kube_admin, "github.com/kubeflow/trainer/v2") as names:
        yield names


def trainjob(name: str, **spec: Any) -> dict[str, Any]:
    """A TrainJob on the torch-distributed ClusterTrainingRuntime, as the SDK's train() makes."""
    trainer = spec.pop("trainer", {})
    return {
        "apiVersion": TRAINER,
        "kind": "TrainJob",
        "metadata": {"name": name},
        "spec": {
            "runtimeRef": {"name": "torch-distributed"},
            "trainer": {
                "image": "docker.io/pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime",
                "command": ["torchrun", "train.py"],
                "numNodes": 2,
                **trainer,
            },
            **spec,
        },
    }


def condition(kind: str, status: str, reason: str, message: str, at: datetime) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": format_time(at),
    }


def trainjob_status(outcome: str | None, *, at: datetime | None = None) -> dict[str, Any]:
    """TrainJobStatus with two nodes: running (`outcome` None), Complete or Failed at `at`."""
    at = at or now()
    conditions = [
        condition("Suspended", "False", "Resumed", "TrainJob is resumed", at - HOUR),
    ]
    running = {"name": "node", "ready": 2, "succeeded": 0, "failed": 0, "active": 2}
    if outcome == "Complete":
        conditions.append(
            condition("Complete", "True", "AllJobsCompleted", "jobset completed successfully", at)
        )
        running |= {"ready": 0, "succeeded": 2, "active": 0}
    elif outcome == "Failed":
        conditions.append(
            condition(
                "Failed", "True", "FailedJobs", "jobset failed due to one or more job failures", at
            )
        )
        running |= {"ready": 0, "failed": 1, "active": 0}
    return {"conditions": conditions, "jobsStatus": [{**running, "suspended": 0}]}


def test_a_notebook_trainjob_is_stamped(notebook: k8s.ApiClient, profile: str) -> None:
    created = post(notebook, path(TRAINER, "trainjobs", profile), trainjob("mnist"))
    labels, annotations = created["metadata"]["labels"], created["metadata"]["annotations"]
    assert labels[KEYS.managed] == "true"
    assert labels[KEYS.rule] == "trainer-jobs"
    assert labels[KEYS.owner] == owner_label_value(notebook_user(profile))
    assert annotations[KEYS.ttl_after_finished] == "7d"
    # No TTL field of its own to fill: the spec is as sent (and the runtime defaults).
    assert created["spec"]["runtimeRef"] == {
        "name": "torch-distributed",
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
    }
    assert "ttlSecondsAfterFinished" not in created["spec"]


def test_a_trainjob_finishes_with_its_complete_or_failed_condition(
    notebook: k8s.ApiClient, kube_admin: k8s.ApiClient, profile: str
) -> None:
    jobs = path(TRAINER, "trainjobs", profile)
    ended = now()
    outcomes: dict[str, str | None] = {"complete": "Complete", "failed": "Failed", "running": None}
    for name, outcome in outcomes.items():
        post(notebook, jobs, trainjob(name))
        status = trainjob_status(outcome, at=ended)
        assert_kept_as_written(write_status(kube_admin, f"{jobs}/{name}", status), status)
    # Suspended by the user: a Suspended True condition is not a finish.
    post(notebook, jobs, trainjob("suspended", suspend=True))
    suspended = {
        "conditions": [
            condition("Suspended", "True", "Suspended", "TrainJob is suspended", ended - HOUR)
        ]
    }
    write_status(kube_admin, f"{jobs}/suspended", suspended)
    finished = {"complete", "failed"}
    names = {*outcomes, "suspended"}

    soon = decisions(sweep_at(kube_admin, profile, later(6), dry_run=True))
    assert {k: a for k, (a, _) in soon.items()} == {f"TrainJob/{n}": "keep" for n in names}
    due = decisions(sweep_at(kube_admin, profile, later(8), dry_run=True))
    assert {k: a for k, (a, _) in due.items()} == {
        f"TrainJob/{n}": "delete" if n in finished else "keep" for n in names
    }
    assert "not finished" in due["TrainJob/running"][1]

    report = sweep_at(kube_admin, profile, later(8), dry_run=False)
    assert {e.name for e in report.entries if e.outcome == "deleted"} == finished
    remaining = {o["metadata"]["name"] for o in get_json(kube_admin, jobs)["items"]}
    assert remaining == names - finished


def test_secrets_a_live_trainjob_names_are_kept(
    notebook: k8s.ApiClient, kube_admin: k8s.ApiClient, profile: str
) -> None:
    secrets = f"/api/v1/namespaces/{profile}/secrets"
    names = ("hf-token", "model-store", "trainer-env", "patched-pod", "finished-job", "unused")
    for name in names:
        post(
            notebook,
            secrets,
            {"metadata": {"name": name}, "type": "Opaque", "stringData": {"token": "t"}},
        )
    jobs = path(TRAINER, "trainjobs", profile)
    env = {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "", "key": "token"}}}

    def secret_env(secret: str) -> list[dict[str, Any]]:
        return [{**env, "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}]

    post(
        notebook,
        jobs,
        trainjob(
            "llm",
            initializer={
                "dataset": {
                    "storageUri": "hf://tatsu-lab/alpaca",
                    "secretRef": {"name": "hf-token"},
                },
                "model": {"storageUri": "s3://models/llama", "secretRef": {"name": "model-store"}},
            },
            trainer={"env": secret_env("trainer-env")},
            # A per-job patch of the runtime's pod template (the replicated job `node`).
            runtimePatches=[
                {
                    "manager": "notebook.kubeflow.org/sdk",
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {
                                        "name": "node",
                                        "template": {
                                            "spec": {
                                                "template": {
                                                    "spec": {
                                                        "containers": [
                                                            {
                                                                "name": "node",
                                                                "env": secret_env("patched-pod"),
                                                            }
                                                        ]
                                                    }
                                                }
                                            }
                                        },
                                    }
                                ]
                            }
                        }
                    },
                }
            ],
        ),
    )
    write_status(kube_admin, f"{jobs}/llm", trainjob_status(None))
    post(notebook, jobs, trainjob("old", trainer={"env": secret_env("finished-job")}))
    write_status(kube_admin, f"{jobs}/old", trainjob_status("Complete", at=now()))

    report = decisions(sweep_at(kube_admin, profile, later(2), dry_run=True))
    for name in names[:4]:
        action, reason = report[f"Secret/{name}"]
        assert action == "keep", (name, reason)
        assert "in use by TrainJob/llm" in reason, (name, reason)
    assert report["Secret/finished-job"][0] == "delete"
    assert report["Secret/unused"][0] == "delete"
