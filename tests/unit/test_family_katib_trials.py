"""Tier 1: Katib Trials read by their own status (katib v0.19.0 shapes)."""

from datetime import UTC, datetime
from typing import Any

import pytest

from kaptain_warden.policies.completion import finished_at
from kaptain_warden.policies.kinds import known_kind, registered_kind
from kaptain_warden.policies.secret_refs import secret_references

T1 = "2026-05-01T10:00:00Z"
T2 = "2026-05-01T11:00:00Z"
D1 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
D2 = datetime(2026, 5, 1, 11, 0, tzinfo=UTC)
TRIAL = registered_kind("kubeflow.org/v1beta1", "Trial")


def trial(
    *conditions: tuple[str, str], completion: str | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Trial",
        "spec": spec,
        "status": {
            "startTime": T1,
            # A new Trial gets a zero completionTime: null until the controller stamps it.
            "completionTime": completion,
            "conditions": [
                {"type": t, "status": s, "lastUpdateTime": T1, "lastTransitionTime": T1}
                for t, s in conditions
            ],
        },
    }


CREATED = ("Created", "True")


@pytest.mark.parametrize(
    ("conditions", "completion", "expected"),
    [
        ((CREATED, ("Running", "True")), None, None),
        ((CREATED, ("Running", "False"), ("Succeeded", "True")), T2, D1),
        ((CREATED, ("Running", "False"), ("Failed", "True")), T2, D1),
        ((CREATED, ("Running", "False"), ("MetricsUnavailable", "True")), T2, D1),
        ((CREATED, ("Running", "False"), ("Killed", "True")), T2, D1),
        # The median-stop service appends EarlyStopped and leaves the rest: Running True,
        # completionTime null. Katib counts it completed.
        ((CREATED, ("Running", "True"), ("EarlyStopped", "True")), None, D1),
        ((CREATED, ("Running", "False"), ("Succeeded", "False")), T2, None),
    ],
)
def test_a_trial_finishes_by_its_own_conditions(conditions, completion, expected):
    assert finished_at(trial(*conditions, completion=completion)) == expected


def test_trials_are_no_rules_kind_but_hold_secrets_while_they_run():
    assert known_kind("kubeflow.org/v1beta1", "Trial") is None
    assert TRIAL is not None and TRIAL.holds_secrets
    env = [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "k"}}}]
    pod = {"containers": [{"name": "training-container", "env": env}]}
    job = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": pod}}}
    tfjob = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "spec": {"tfReplicaSpecs": {"Worker": {"template": {"spec": pod}}}},
    }
    running = (CREATED, ("Running", "True"))
    for run_spec in (job, tfjob):
        assert secret_references(trial(*running, runSpec=run_spec), TRIAL) == {"s3"}
        stopped = trial(*running, ("EarlyStopped", "True"), runSpec=run_spec)
        assert secret_references(stopped, TRIAL) == frozenset()
