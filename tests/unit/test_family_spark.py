"""Tier 1: the Spark operator's SparkApplication in the registry (spark-operator v2.5.0)."""

from datetime import UTC, datetime
from typing import Any

import pytest

from kaptain_warden.policies.completion import finished_at
from kaptain_warden.policies.kinds import registered_kind
from kaptain_warden.policies.native_ttl import native_location, native_ttl
from kaptain_warden.policies.secret_refs import secret_references

END = "2026-05-01T10:00:00Z"
ENDED = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
SPARK = registered_kind("sparkoperator.k8s.io/v1beta2", "SparkApplication")


def app(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "spec": spec,
    }
    if status is not None:
        obj["status"] = status
    return obj


def state(name: str, terminated: str | None) -> dict[str, Any]:
    return {"applicationState": {"state": name}, "terminationTime": terminated}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (state("COMPLETED", END), ENDED),
        (state("FAILED", END), ENDED),
        # Unset metav1.Time: null (the operator's status update writes it).
        (state("RUNNING", None), None),
        (state("SUBMITTED", None), None),
        # The driver ended, the operator may still retry: not final.
        (state("FAILING", END), None),
        (state("SUCCEEDING", END), None),
        (state("PENDING_RERUN", None), None),
        (state("SUBMISSION_FAILED", None), None),
        (state("COMPLETED", None), None),
        (state("COMPLETED", "not a time"), None),
        ({"applicationState": "COMPLETED", "terminationTime": END}, None),
        ({}, None),
    ],
)
def test_an_application_finishes_completed_or_failed_at_its_termination_time(status, expected):
    assert finished_at(app(status)) == expected


def test_ttl_after_finished_becomes_the_applications_time_to_live_unless_it_has_one():
    assert native_ttl(app(), 604800) == (("/spec/timeToLiveSeconds", 604800),)
    assert native_ttl(app(timeToLiveSeconds=600), 604800) == ()
    assert native_location(app(timeToLiveSeconds=600)) == ("/spec/timeToLiveSeconds", 600)


def test_a_live_application_holds_every_secret_its_driver_and_executors_use():
    assert SPARK is not None
    env = {"name": "T", "valueFrom": {"secretKeyRef": {"name": "sidecar", "key": "k"}}}
    obj = app(
        {"applicationState": {"state": "RUNNING"}, "terminationTime": None},
        imagePullSecrets=["pull", 7, ""],
        volumes=[{"name": "v", "secret": {"secretName": "volume"}}],
        driver={
            "secrets": [{"name": "mounted", "path": "/etc/s", "secretType": "Generic"}],
            "envSecretKeyRefs": {"TOKEN": {"name": "by-key", "key": "token"}},
            "envFrom": [{"secretRef": {"name": "env-from"}}],
            "sidecars": [{"name": "proxy", "env": [env]}],
        },
        executor={
            "initContainers": [{"name": "fetch", "envFrom": [{"secretRef": {"name": "init"}}]}],
            "template": {"spec": {"imagePullSecrets": [{"name": "template-pull"}]}},
        },
    )
    assert secret_references(obj, SPARK) == {
        "pull",
        "volume",
        "mounted",
        "by-key",
        "env-from",
        "sidecar",
        "init",
        "template-pull",
    }
    finished = {**obj, "status": state("COMPLETED", END)}
    assert secret_references(finished, SPARK) == frozenset()
