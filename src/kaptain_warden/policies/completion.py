"""When did a job-like object finish? Read from each kind's own status, never guessed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from kaptain_warden.policies.timestamps import parse_time

__all__ = ["TRAINING_OPERATOR_KINDS", "finished_at"]

# Kinds that share the training-operator's common JobStatus (kubeflow/training-operator
# pkg/apis/kubeflow.org/v1 common_types.go: JobConditionType Created | Running | Restarting |
# Succeeded | Failed, plus Suspended in later releases; status.completionTime). The older
# tf-operator / pytorch-operator and mpi-operator v2beta1 use the same condition names.
TRAINING_OPERATOR_KINDS = frozenset(
    {"TFJob", "PyTorchJob", "MPIJob", "XGBoostJob", "PaddleJob", "MXJob", "JAXJob"}
)

_KUBEFLOW_GROUP = "kubeflow.org"


def finished_at(obj: Mapping[str, Any]) -> datetime | None:
    """Return when `obj` finished, as an aware UTC datetime, or None.

    None means "not finished", "a kind we do not know how to read" or "finished, but the
    time is missing or unreadable": callers must treat None as "do not expire by
    completion". Dispatch is on the API group and kind (any version):

    - `batch` Job: the first condition `Complete` or `Failed` with status "True" gives its
      `lastTransitionTime` (status.completionTime when that is absent);
    - `kubeflow.org` TFJob, PyTorchJob, MPIJob, XGBoostJob, PaddleJob, MXJob, JAXJob:
      `Succeeded` or `Failed` "True" gives its `lastTransitionTime`, else status.completionTime;
    - `kubeflow.org` Experiment (Katib): `Succeeded` or `Failed` "True" gives
      status.completionTime, else that condition's `lastTransitionTime`.
    """
    group = _api_group(obj.get("apiVersion"))
    kind = obj.get("kind")
    status = obj.get("status")
    if not isinstance(status, Mapping):
        return None
    if group == "batch" and kind == "Job":
        # Same rule as Kubernetes' TTL-after-finished controller (pkg/controller/
        # ttlafterfinished, jobFinishTime): first Complete/Failed=True condition in list
        # order, its lastTransitionTime. SuccessCriteriaMet / FailureTarget (1.31+) only
        # announce a finish that is not there yet, so they do not count.
        return _finish_time(
            status, finished_types=("Complete", "Failed"), prefer_completion_time=False
        )
    if group == _KUBEFLOW_GROUP and kind in TRAINING_OPERATOR_KINDS:
        # training-operator's IsSucceeded/IsFailed: the condition with status True. Its own
        # TTL counts from status.completionTime (common/job.go CleanupJob), which it sets in
        # the same reconcile as the condition; we prefer the condition, like for Jobs.
        return _finish_time(
            status, finished_types=("Succeeded", "Failed"), prefer_completion_time=False
        )
    if group == _KUBEFLOW_GROUP and kind == "Experiment":
        # Katib (experiments/v1beta1 util.go): IsCompleted = Succeeded or Failed True;
        # the controller stamps status.completionTime when it marks it completed. A
        # restarted Experiment has both conditions removed, so it reads as unfinished.
        return _finish_time(
            status, finished_types=("Succeeded", "Failed"), prefer_completion_time=True
        )
    return None


def _api_group(api_version: object) -> str | None:
    """`batch/v1` -> `batch`; `v1` (the core group) -> ``; anything else -> None."""
    if not isinstance(api_version, str) or not api_version:
        return None
    group, sep, _version = api_version.rpartition("/")
    return group if sep else ""


def _conditions(status: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return
    for condition in conditions:
        if isinstance(condition, Mapping):
            yield condition


def _finish_time(
    status: Mapping[str, Any],
    *,
    finished_types: tuple[str, ...],
    prefer_completion_time: bool,
) -> datetime | None:
    """The finish instant from the first finished condition, or None.

    A present but unreadable timestamp gives None rather than falling back to the other
    field: a status we cannot fully read is not evidence enough to start a TTL clock.
    """
    finished = next(
        (
            c
            for c in _conditions(status)
            if c.get("type") in finished_types and c.get("status") == "True"
        ),
        None,
    )
    if finished is None:
        return None
    fields: list[tuple[Mapping[str, Any], str]] = [
        (finished, "lastTransitionTime"),
        (status, "completionTime"),
    ]
    if prefer_completion_time:
        fields.reverse()
    for source, key in fields:
        raw = source.get(key)
        if raw is None or raw == "":
            continue  # absent: try the other field
        return parse_time(raw)  # present: it decides, readable or not
    return None
