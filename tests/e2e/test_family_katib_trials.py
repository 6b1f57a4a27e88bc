"""Tier 3: Katib Trials (`kubeflow.org/v1beta1`) read by their own status, on the upstream CRD
(github.com/kubeflow/katib v0.19.0, manifests/v1beta1/components/crd/trial.yaml).

A Trial runs its `runSpec` (the Experiment's trial template, parameters filled in): while it
runs, the Secrets that manifest names are in use; once it finished, by any of the conditions
Katib counts (pkg/apis/controller/trials/v1beta1/util.go IsCompleted: Succeeded, Failed, Killed,
EarlyStopped, MetricsUnavailable True), it holds nothing.

No Katib controller runs here. The status each test writes is Katib v0.19.0's:
pkg/controller.v1beta1/trial/trial_controller.go (a new Trial gets startTime, and a zero
completionTime, which is `null` in JSON), trial_controller_util.go UpdateTrialStatusCondition
(Running set False and Succeeded / Failed / MetricsUnavailable True, completionTime stamped),
and the median-stop service pkg/earlystopping/v1beta1/medianstop/service.py, which appends
EarlyStopped True through the status subresource and leaves Running and completionTime as they
were.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from kubernetes import client as k8s

from family_kit import assert_kept_as_written, decisions, later, path, post, sweep_at, write_status
from sweeper_kit import HOUR, now

pytestmark = pytest.mark.e2e

KATIB = "kubeflow.org/v1beta1"


def trial(name: str, secret: str) -> dict[str, Any]:
    """A Trial as the Experiment controller makes it from a batch-Job trial template."""
    return {
        "apiVersion": KATIB,
        "kind": "Trial",
        "metadata": {"name": name, "labels": {"katib.kubeflow.org/experiment": "random-lr"}},
        "spec": {
            "objective": {"type": "maximize", "goal": 0.99, "objectiveMetricName": "accuracy"},
            "parameterAssignments": [{"name": "lr", "value": "0.03"}],
            "primaryContainerName": "training-container",
            "successCondition": 'status.conditions.#(type=="Complete")#|#(status=="True")#',
            "failureCondition": 'status.conditions.#(type=="Failed")#|#(status=="True")#',
            "metricsCollector": {"collector": {"kind": "StdOut"}},
            "runSpec": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": name},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "training-container",
                                    "image": "docker.io/kubeflowkatib/pytorch-mnist-cpu:latest",
                                    "command": [
                                        "python3",
                                        "/opt/pytorch-mnist/mnist.py",
                                        "--lr=0.03",
                                    ],
                                    "env": [
                                        {
                                            "name": "S3_SECRET",
                                            "valueFrom": {
                                                "secretKeyRef": {"name": secret, "key": "token"}
                                            },
                                        }
                                    ],
                                }
                            ],
                        }
                    }
                },
            },
        },
    }


def katib_condition(
    kind: str, status: str, reason: str, message: str, at: datetime
) -> dict[str, Any]:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
    }


def trial_status(outcome: str | None, at: datetime) -> dict[str, Any]:
    """TrialStatus: running (`outcome` None), or finished by `outcome` at `at`."""
    started = at - HOUR
    conditions = [katib_condition("Created", "True", "TrialCreated", "Trial is created", started)]
    running = katib_condition("Running", "True", "TrialRunning", "Trial is running", started)
    status: dict[str, Any] = {
        "startTime": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "completionTime": None,
    }
    if outcome is None:
        return {**status, "conditions": [*conditions, running]}
    if outcome == "EarlyStopped":
        # The median-stop service appends its condition and changes nothing else.
        stopped = katib_condition(
            "EarlyStopped", "True", "TrialEarlyStopped", "Trial is early stopped", at
        )
        return {**status, "conditions": [*conditions, running, stopped]}
    reasons = {
        "Succeeded": ("TrialSucceeded", "Trial has succeeded"),
        "Failed": ("TrialFailed", "Trial has failed"),
        "MetricsUnavailable": ("MetricsUnavailable", "Metrics are not available"),
    }
    reason, message = reasons[outcome]
    ended = {**running, "status": "False"}
    status |= {
        "completionTime": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "conditions": [*conditions, ended, katib_condition(outcome, "True", reason, message, at)],
    }
    if outcome == "Succeeded":
        status["observation"] = {
            "metrics": [{"name": "accuracy", "latest": "0.97", "max": "0.97", "min": "0.91"}]
        }
    return status


def test_a_trial_holds_its_secrets_until_its_own_status_says_it_finished(
    notebook: k8s.ApiClient, kube_admin: k8s.ApiClient, profile: str
) -> None:
    secrets = f"/api/v1/namespaces/{profile}/secrets"
    trials = path(KATIB, "trials", profile)
    outcomes: dict[str, str | None] = {
        "running": None,
        "succeeded": "Succeeded",
        "failed": "Failed",
        "early-stopped": "EarlyStopped",
        "no-metrics": "MetricsUnavailable",
    }
    for name, outcome in outcomes.items():
        post(
            notebook,
            secrets,
            {"metadata": {"name": f"s3-{name}"}, "type": "Opaque", "stringData": {"token": "t"}},
        )
        post(kube_admin, trials, trial(f"random-lr-{name}", f"s3-{name}"))
        status = trial_status(outcome, now())
        stored = write_status(kube_admin, f"{trials}/random-lr-{name}", status)
        assert_kept_as_written(stored, status)

    report = decisions(sweep_at(kube_admin, profile, later(2), dry_run=True))
    action, reason = report["Secret/s3-running"]
    assert action == "keep"
    assert "in use by Trial/random-lr-running" in reason
    # Finished by their own status, whatever the Experiment says (there is none here): an
    # early-stopped Trial's completionTime stays null, its condition alone tells.
    for name in ("succeeded", "failed", "early-stopped", "no-metrics"):
        assert report[f"Secret/s3-{name}"][0] == "delete", (name, report[f"Secret/s3-{name}"])
    # Trials are no rule's in the built-in policy: a notebook never makes them.
    assert not any(key.startswith("Trial/") for key in report)
