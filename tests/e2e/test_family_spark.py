"""Tier 3: the Spark operator's SparkApplication (`sparkoperator.k8s.io/v1beta2`) on its upstream
CRD (github.com/kubeflow/spark-operator/v2 v2.5.0,
config/crd/bases/sparkoperator.k8s.io_sparkapplications.yaml), with the webhooks and the sweeper.

No Spark operator runs here. The status each test writes is what spark-operator v2.5.0 writes:
api/v1beta2/sparkapplication_types.go (SparkApplicationStatus: `terminationTime` and
`lastSubmissionAttemptTime` are non-pointer `metav1.Time`s, so an unset one is `null`) as
internal/controller/sparkapplication/controller.go fills it (terminationTime stamped when the
driver terminates; COMPLETED or FAILED is final, pkg/util/sparkapplication.go IsTerminated),
written whole through the status subresource.
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
SPARK = "sparkoperator.k8s.io/v1beta2"
SEVEN_DAYS = 7 * 24 * 3600


@pytest.fixture(scope="module", autouse=True)
def spark_crds(kube_admin: k8s.ApiClient) -> Iterator[list[str]]:
    with family_crds(kube_admin, "github.com/kubeflow/spark-operator/v2") as names:
        yield names


def application(name: str, **spec: Any) -> dict[str, Any]:
    """The shape of the operator's spark-pi example, in Python."""
    driver = spec.pop("driver", {})
    executor = spec.pop("executor", {})
    return {
        "apiVersion": SPARK,
        "kind": "SparkApplication",
        "metadata": {"name": name},
        "spec": {
            "type": "Python",
            "mode": "cluster",
            "image": "docker.io/library/spark:4.0.0",
            "sparkVersion": "4.0.0",
            "mainApplicationFile": "local:///opt/spark/examples/src/main/python/pi.py",
            "driver": {"cores": 1, "memory": "512m", "serviceAccount": "spark", **driver},
            "executor": {"instances": 1, "cores": 1, "memory": "512m", **executor},
            **spec,
        },
    }


def app_status(name: str, state: str, *, terminated: datetime | None = None) -> dict[str, Any]:
    """SparkApplicationStatus after one submission; `terminationTime` null until the driver
    terminated."""
    submitted = (terminated or now()) - HOUR
    status: dict[str, Any] = {
        "sparkApplicationId": "spark-6c1ab3e1f5d24f3c9c1e4c7d2b8a9f00",
        "submissionID": "4b4c6f2e-3a0e-4f59-9a43-9f0e2f1f6d2b",
        "lastSubmissionAttemptTime": format_time(submitted),
        "terminationTime": format_time(terminated) if terminated is not None else None,
        "driverInfo": {
            "podName": f"{name}-driver",
            "webUIServiceName": f"{name}-ui-svc",
            "webUIPort": 4040,
            "webUIAddress": "10.96.12.34:4040",
        },
        "applicationState": {"state": state},
        "executorState": {f"{name}-5e1a2b93c4d5e6f7-exec-1": "RUNNING"},
        "submissionAttempts": 1,
        "executionAttempts": 1,
    }
    if state in ("COMPLETED", "FAILED"):
        status["executorState"] = {f"{name}-5e1a2b93c4d5e6f7-exec-1": "COMPLETED"}
    if state == "FAILED":
        status["applicationState"]["errorMessage"] = (
            "driver container failed with ExitCode: 1, Reason: Error"
        )
    return status


def test_a_notebook_application_gets_the_ttl_as_its_own_time_to_live(
    notebook: k8s.ApiClient, profile: str
) -> None:
    apps = path(SPARK, "sparkapplications", profile)
    user = notebook_user(profile)
    mirrored = post(notebook, apps, application("pi"))
    own = post(notebook, apps, application("pi-own", timeToLiveSeconds=600))
    for created in (mirrored, own):
        labels, annotations = created["metadata"]["labels"], created["metadata"]["annotations"]
        assert labels[KEYS.managed] == "true"
        assert labels[KEYS.rule] == "spark-applications"
        assert labels[KEYS.owner] == owner_label_value(user)
        assert annotations[KEYS.ttl_after_finished] == "7d"
    # spec.timeToLiveSeconds deletes the application that long after status.terminationTime,
    # the instant the warden counts from: the same clock, so the warden fills it in ...
    assert mirrored["spec"]["timeToLiveSeconds"] == SEVEN_DAYS
    # ... and leaves the user's own value alone.
    assert own["spec"]["timeToLiveSeconds"] == 600


def test_an_application_finishes_when_its_state_is_completed_or_failed(
    notebook: k8s.ApiClient, kube_admin: k8s.ApiClient, profile: str
) -> None:
    apps = path(SPARK, "sparkapplications", profile)
    ended = now()
    states = {
        # name: (applicationState.state, terminated)
        "completed": ("COMPLETED", True),
        "failed": ("FAILED", True),
        "running": ("RUNNING", False),
        "submitted": ("SUBMITTED", False),
        # The driver ended and terminationTime is set, but the operator may still retry.
        "failing": ("FAILING", True),
        "pending-rerun": ("PENDING_RERUN", False),
    }
    for name, (state, terminated) in states.items():
        post(notebook, apps, application(name))
        status = app_status(name, state, terminated=ended if terminated else None)
        assert_kept_as_written(write_status(kube_admin, f"{apps}/{name}", status), status)
    assert get_json(kube_admin, f"{apps}/running")["status"]["terminationTime"] is None
    done = {n for n, (state, _) in states.items() if state in ("COMPLETED", "FAILED")}

    soon = decisions(sweep_at(kube_admin, profile, later(6), dry_run=True))
    assert {k: a for k, (a, _) in soon.items()} == {f"SparkApplication/{n}": "keep" for n in states}

    due = decisions(sweep_at(kube_admin, profile, later(8), dry_run=True))
    assert {k: a for k, (a, _) in due.items()} == {
        f"SparkApplication/{n}": "delete" if n in done else "keep" for n in states
    }
    for name in set(states) - done:
        assert "not finished" in due[f"SparkApplication/{name}"][1]

    report = sweep_at(kube_admin, profile, later(8), dry_run=False)
    assert {e.name for e in report.entries if e.outcome == "deleted"} == done
    remaining = {o["metadata"]["name"] for o in get_json(kube_admin, apps)["items"]}
    assert remaining == set(states) - done


def test_secrets_a_live_application_names_are_kept(
    notebook: k8s.ApiClient, kube_admin: k8s.ApiClient, profile: str
) -> None:
    secrets = f"/api/v1/namespaces/{profile}/secrets"
    names = (
        "pull",
        "mounted",
        "driver-secret",
        "driver-env",
        "executor-env-from",
        "executor-template",
        "finished-app",
        "unused",
    )
    for name in names:
        post(
            notebook,
            secrets,
            {"metadata": {"name": name}, "type": "Opaque", "stringData": {"token": "t"}},
        )
    apps = path(SPARK, "sparkapplications", profile)
    live = application(
        "etl",
        # SparkApplication's own shapes: image pull Secrets by bare name, Secrets mounted by
        # the operator (driver.secrets), env keys from Secrets by map (envSecretKeyRefs).
        imagePullSecrets=["pull"],
        volumes=[{"name": "creds", "secret": {"secretName": "mounted"}}],
        driver={
            "secrets": [{"name": "driver-secret", "path": "/etc/creds", "secretType": "Generic"}],
            "envSecretKeyRefs": {"TOKEN": {"name": "driver-env", "key": "token"}},
        },
        executor={
            "envFrom": [{"secretRef": {"name": "executor-env-from"}}],
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "executor",
                            "env": [
                                {
                                    "name": "KEY",
                                    "valueFrom": {
                                        "secretKeyRef": {
                                            "name": "executor-template",
                                            "key": "token",
                                        }
                                    },
                                }
                            ],
                        }
                    ]
                }
            },
        },
    )
    post(notebook, apps, live)
    write_status(kube_admin, f"{apps}/etl", app_status("etl", "RUNNING"))
    post(notebook, apps, application("old", imagePullSecrets=["finished-app"]))
    write_status(kube_admin, f"{apps}/old", app_status("old", "COMPLETED", terminated=now()))

    report = decisions(sweep_at(kube_admin, profile, later(2), dry_run=True))
    for name in names[:6]:
        action, reason = report[f"Secret/{name}"]
        assert action == "keep", (name, reason)
        assert "in use by SparkApplication/etl" in reason, (name, reason)
    # A finished application starts no driver again: it holds nothing.
    assert report["Secret/finished-app"][0] == "delete"
    assert report["Secret/unused"][0] == "delete"
