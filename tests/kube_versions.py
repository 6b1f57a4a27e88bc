"""What the Kubernetes server under test allows, for tests that run on every supported minor.

`make test` runs tier 3 against the oldest supported minor (1.30) and the newest (1.34).
Fixtures whose form depends on the version ask the server under test (`GET /version`); none
assumes one. The differences that matter to the tests:

- Keeping the Job controller away from a test's Jobs (their status is the test's to write):
  from 1.32 (JobManagedBy beta, on by default) a Job whose `spec.managedBy` names another
  controller is skipped by the built-in Job controller. Before 1.32 the field is alpha and off:
  the API server drops it and the controller would run the Job (make Pods, rewrite its status,
  record Events beside the sweeper's). There the session's controller manager runs no Job
  controller at all, and the few tests that need one get a control plane of their own
  (the `job_controller` fixture).
- A finished Job's conditions: from 1.32 the API server requires the interim condition before
  the terminal one (`SuccessCriteriaMet` before `Complete`, `FailureTarget` before `Failed`),
  as the Job controller writes them. 1.30 knows no `SuccessCriteriaMet` (422 on a non-indexed
  Job), and its Job controller writes the terminal condition alone.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s

from kaptain_warden.kube.client import request_json

JOB_MANAGED_BY: tuple[int, int] = (1, 32)
JOB_INTERIM_CONDITIONS: tuple[int, int] = (1, 32)


def server_version(api: k8s.ApiClient) -> tuple[int, int]:
    """(major, minor) of the API server `api` talks to."""
    version: dict[str, Any] = request_json(api, "GET", "/version")
    return int(version["major"]), int(version["minor"].rstrip("+"))


def job_finished_conditions(
    terminal: str, stamp: str, version: tuple[int, int]
) -> list[dict[str, str]]:
    """The conditions a finished Job (`Complete` or `Failed`) has on this server version."""
    final = {"type": terminal, "status": "True", "lastTransitionTime": stamp}
    if version < JOB_INTERIM_CONDITIONS:
        return [final]
    interim = "SuccessCriteriaMet" if terminal == "Complete" else "FailureTarget"
    return [{"type": interim, "status": "True", "lastTransitionTime": stamp}, final]


def streams_lists(version: tuple[int, int]) -> bool:
    """Whether the API server streams a list by default (a watch with `sendInitialEvents`, the
    WatchList feature): k8s.io/apiserver `pkg/features/kube_features.go` has it alpha and off
    in v0.30.14, beta and on from 1.32, off again in 1.33 and on from 1.34 (v0.34.4)."""
    return version == (1, 32) or version >= (1, 34)
