"""Tier 1: finished_at reads each kind's own status conditions."""

from datetime import UTC, datetime
from typing import Any

import pytest

from kaptain_warden.policies.completion import finished_at, has_finished
from kaptain_warden.policies.kinds import registered_kind

T1 = "2024-05-01T10:00:00Z"
T2 = "2024-05-01T11:30:00Z"
D1 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
D2 = datetime(2024, 5, 1, 11, 30, tzinfo=UTC)


def cond(type_: str, status: str = "True", when: str | None = T1) -> dict[str, Any]:
    c: dict[str, Any] = {"type": type_, "status": status}
    if when is not None:
        c["lastTransitionTime"] = when
    return c


def obj(api_version: str, kind: str, status: dict[str, Any] | None) -> dict[str, Any]:
    o: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}
    if status is not None:
        o["status"] = status
    return o


def job(*conditions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return obj("batch/v1", "Job", {"conditions": list(conditions), **extra})


def tfjob(*conditions: dict[str, Any], kind: str = "TFJob", **extra: Any) -> dict[str, Any]:
    return obj("kubeflow.org/v1", kind, {"conditions": list(conditions), **extra})


def experiment(*conditions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return obj("kubeflow.org/v1beta1", "Experiment", {"conditions": list(conditions), **extra})


FINISHED_AT_CASES: list[tuple[str, dict[str, Any], datetime | None]] = [
    # --- batch/v1 Job (Kubernetes ttlafterfinished jobFinishTime) ---
    ("job complete", job(cond("Complete")), D1),
    ("job failed", job(cond("Failed", when=T2)), D2),
    ("job running", job(), None),
    ("job complete False", job(cond("Complete", "False")), None),
    ("job complete Unknown", job(cond("Complete", "Unknown")), None),
    ("job suspended is not finished", job(cond("Suspended")), None),
    # 1.31+: these precede Complete/Failed and do not mean the Job has finished.
    ("job SuccessCriteriaMet only", job(cond("SuccessCriteriaMet")), None),
    ("job FailureTarget only", job(cond("FailureTarget")), None),
    (
        "job SuccessCriteriaMet then Complete: Complete's time",
        job(cond("SuccessCriteriaMet", when=T1), cond("Complete", when=T2)),
        D2,
    ),
    (
        "job first finished condition in list order wins (like Kubernetes)",
        job(cond("Failed", when=T2), cond("Complete", when=T1)),
        D2,
    ),
    (
        "job without lastTransitionTime falls back to completionTime",
        job(cond("Complete", when=None), completionTime=T2),
        D2,
    ),
    (
        "job with empty lastTransitionTime falls back to completionTime",
        job(cond("Complete", when=""), completionTime=T2),
        D2,
    ),
    ("job without any time", job(cond("Complete", when=None)), None),
    (
        "job unreadable lastTransitionTime: no guess from completionTime",
        job(cond("Complete", when="yesterday"), completionTime=T2),
        None,
    ),
    ("job completionTime alone is not a finish", job(completionTime=T2), None),
    (
        "job batch/v1beta1 is still batch",
        obj("batch/v1beta1", "Job", job(cond("Complete"))["status"]),
        D1,
    ),
    # --- training-operator kinds ---
    ("tfjob succeeded", tfjob(cond("Running", "False"), cond("Succeeded")), D1),
    ("tfjob failed", tfjob(cond("Failed", when=T2)), D2),
    ("tfjob running", tfjob(cond("Created"), cond("Running")), None),
    ("tfjob restarting", tfjob(cond("Restarting")), None),
    ("tfjob suspended", tfjob(cond("Suspended")), None),
    ("tfjob Succeeded False", tfjob(cond("Succeeded", "False")), None),
    (
        "tfjob succeeded without transition time: completionTime",
        tfjob(cond("Succeeded", when=None), completionTime=T2),
        D2,
    ),
    ("tfjob completionTime without finished condition", tfjob(completionTime=T2), None),
    ("pytorchjob succeeded", tfjob(cond("Succeeded"), kind="PyTorchJob"), D1),
    ("mpijob failed", tfjob(cond("Failed"), kind="MPIJob"), D1),
    ("xgboostjob succeeded", tfjob(cond("Succeeded"), kind="XGBoostJob"), D1),
    ("paddlejob succeeded", tfjob(cond("Succeeded"), kind="PaddleJob"), D1),
    (
        "mpi-operator v2beta1 MPIJob",
        obj("kubeflow.org/v2beta1", "MPIJob", {"conditions": [cond("Succeeded")]}),
        D1,
    ),
    # tf-operator v1 (Kubeflow <= 1.2) used the same conditions.
    (
        "legacy tf-operator TFJob v1",
        obj("kubeflow.org/v1", "TFJob", {"conditions": [cond("Succeeded")]}),
        D1,
    ),
    # A Job condition name on a TFJob means nothing.
    ("tfjob Complete is not a training-operator type", tfjob(cond("Complete")), None),
    # --- Katib Experiment ---
    (
        "experiment succeeded: completionTime first",
        experiment(cond("Succeeded", when=T1), completionTime=T2),
        D2,
    ),
    (
        "experiment failed without completionTime: condition time",
        experiment(cond("Failed")),
        D1,
    ),
    ("experiment running", experiment(cond("Created"), cond("Running")), None),
    ("experiment restarting", experiment(cond("Restarting")), None),
    (
        "experiment unreadable completionTime: no guess from the condition",
        experiment(cond("Succeeded"), completionTime="soon"),
        None,
    ),
    ("experiment completionTime without condition", experiment(completionTime=T2), None),
    (
        "katib v1alpha3 Experiment reads the same",
        obj("kubeflow.org/v1alpha3", "Experiment", {"conditions": [cond("Succeeded")]}),
        D1,
    ),
    # --- what we do not read ---
    ("unknown kind", obj("apps/v1", "Deployment", {"conditions": [cond("Complete")]}), None),
    (
        "Job in another group",
        obj("example.com/v1", "Job", {"conditions": [cond("Complete")]}),
        None,
    ),
    (
        "Experiment in another group",
        obj("example.com/v1", "Experiment", {"conditions": [cond("Succeeded")]}),
        None,
    ),
    (
        "TFJob in another group",
        obj("example.com/v1", "TFJob", {"conditions": [cond("Succeeded")]}),
        None,
    ),
    ("core group", obj("v1", "Pod", {"conditions": [cond("Complete")]}), None),
    ("no apiVersion", {"kind": "Job", "status": {"conditions": [cond("Complete")]}}, None),
    ("no status", obj("batch/v1", "Job", None), None),
    ("status not a map", {"apiVersion": "batch/v1", "kind": "Job", "status": "done"}, None),
    (
        "conditions not a list",
        obj("batch/v1", "Job", {"conditions": {"type": "Complete"}}),
        None,
    ),
    (
        "condition not a map",
        obj("batch/v1", "Job", {"conditions": ["Complete", cond("Complete")]}),
        D1,
    ),
    (
        "status True as a bool is not the API's string",
        job({"type": "Complete", "status": True, "lastTransitionTime": T1}),
        None,
    ),
]


@pytest.mark.parametrize(
    ("case", "o", "expected"), FINISHED_AT_CASES, ids=[c[0] for c in FINISHED_AT_CASES]
)
def test_finished_at(case: str, o: dict[str, Any], expected: datetime | None) -> None:
    assert finished_at(o) == expected, case


TRAINING_OPERATOR_V1 = ("TFJob", "PyTorchJob", "MPIJob", "XGBoostJob", "PaddleJob", "JAXJob")


@pytest.mark.parametrize("kind", TRAINING_OPERATOR_V1)
@pytest.mark.parametrize("finished", ["Succeeded", "Failed"])
def test_every_training_operator_kind_finishes_on_its_job_status(kind: str, finished: str) -> None:
    # training-operator v1.9 JobStatus: the condition turned True, after Created and Running.
    status = {
        "conditions": [
            cond("Created", when=T1),
            cond("Running", "False", T1),
            cond(finished, when=T2),
        ],
        "completionTime": T1,
    }
    assert finished_at(obj("kubeflow.org/v1", kind, status)) == D2
    running = {"conditions": [cond("Created"), cond("Running")]}
    assert finished_at(obj("kubeflow.org/v1", kind, running)) is None


def pod(phase: object) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "status": {"phase": phase}}


@pytest.mark.parametrize(
    ("phase", "finished"),
    [
        ("Succeeded", True),
        ("Failed", True),
        ("Running", False),
        ("Pending", False),
        (None, False),
        (["Failed"], False),
    ],
)
def test_a_pods_phase_says_it_finished_but_not_when(phase: object, finished: bool) -> None:
    kind = registered_kind("v1", "Pod")
    assert kind is not None
    assert has_finished(pod(phase), kind) is finished
    assert finished_at(pod(phase)) is None  # no instant: never starts a TTL clock


def test_a_job_with_an_unreadable_finish_time_has_not_finished() -> None:
    kind = registered_kind("batch/v1", "Job")
    assert kind is not None
    assert has_finished(job(cond("Complete")), kind)
    assert not has_finished(job(cond("Complete", when="yesterday")), kind)
    assert not has_finished(job(cond("Complete", "False")), kind)


def test_result_is_utc_aware() -> None:
    result = finished_at(job(cond("Complete", when="2024-05-01T12:00:00+02:00")))
    assert result == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert result is not None and result.tzinfo is not None
