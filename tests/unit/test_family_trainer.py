"""Tier 1: Kubeflow Trainer v2's TrainJob in the registry (trainer v2.3.0 status shapes)."""

from datetime import UTC, datetime
from typing import Any

import pytest

from kaptain_warden.policies.completion import finished_at
from kaptain_warden.policies.kinds import registered_kind
from kaptain_warden.policies.native_ttl import native_ttl
from kaptain_warden.policies.secret_refs import secret_references

END = "2026-05-01T10:00:00Z"
ENDED = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
TRAINJOB = registered_kind("trainer.kubeflow.org/v1alpha1", "TrainJob")


def trainjob(*conditions: tuple[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "spec": spec,
        "status": {
            "conditions": [
                {"type": t, "status": s, "reason": "R", "message": "M", "lastTransitionTime": END}
                for t, s in conditions
            ]
        },
    }


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ((("Complete", "True"),), ENDED),
        ((("Failed", "True"),), ENDED),
        ((("Suspended", "False"), ("Complete", "True")), ENDED),
        ((("Suspended", "True"),), None),
        ((("Complete", "False"),), None),
        ((), None),
    ],
)
def test_a_trainjob_finishes_with_complete_or_failed(conditions, expected):
    assert finished_at(trainjob(*conditions)) == expected


def test_a_trainjob_has_no_ttl_field_of_its_own():
    assert native_ttl(trainjob(), 3600) == ()


def test_a_live_trainjob_holds_its_initializers_trainer_and_patched_pods_secrets():
    assert TRAINJOB is not None

    def env(secret: str) -> list[dict[str, Any]]:
        return [{"name": "T", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}]

    pod = {"containers": [{"name": "node", "env": env("patched")}], "volumes": []}
    patch = {
        "manager": "sdk",
        "trainingRuntimeSpec": {
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {"name": "dataset-initializer"},
                        {"name": "node", "template": {"spec": {"template": {"spec": pod}}}},
                    ]
                }
            }
        },
    }
    obj = trainjob(
        initializer={
            "dataset": {"storageUri": "hf://x", "secretRef": {"name": "dataset"}},
            "model": {"storageUri": "s3://m", "env": env("model-env")},
        },
        trainer={"image": "i", "env": env("trainer")},
        runtimePatches=[{"manager": "other"}, patch],
    )
    assert secret_references(obj, TRAINJOB) == {"dataset", "model-env", "trainer", "patched"}
    assert secret_references(trainjob(("Complete", "True"), **obj["spec"]), TRAINJOB) == set()
