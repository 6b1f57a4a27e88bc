"""Tier 3: a governed kind that also holds Secrets (Jobs, training jobs, Experiments, ...) is
listed once per pass, for its own decisions and for the in-use check alike, against a real API
server; its unmanaged objects still keep the Secrets they use."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import pytest

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import request_json
from sweeper_kit import HOUR, body, create, exists, now, policy_for_tests, sweeper

pytestmark = pytest.mark.e2e

POLICY = policy_for_tests()


class CountingApi(KubeApi):
    """The real door, counting each GET by path (query left out), a page's or a streamed
    list's alike."""

    def __init__(self, inner: KubeApi) -> None:
        super().__init__(inner.api_client, timeout=inner.timeout)
        self.gets: Counter[str] = Counter()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        if method == "GET":
            self.gets[path] += 1
        return super().request(method, path, **kw)

    def stream(self, path: str, **kw: Any) -> Any:
        events = super().stream(path, **kw)

        def counted() -> Any:
            with contextlib.closing(events):
                for n, event in enumerate(events):
                    # Counted once it answers: a stream refused up front (the API server has
                    # streaming lists off) is followed by the same list in pages.
                    self.gets[path] += n == 0
                    yield event

        return counted()


def uses(secret: str) -> dict[str, Any]:
    env = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}]
    return {
        "restartPolicy": "Never",
        "containers": [{"name": "c", "image": "registry.example/train:1", "env": env}],
    }


def test_a_governed_holder_kind_is_listed_once_and_still_protects(kube_admin, namespace):
    t = now()
    used = create(kube_admin, namespace, body("v1", "Secret", "used", expires=t - HOUR))
    unused = create(kube_admin, namespace, body("v1", "Secret", "unused", expires=t - HOUR))
    # A managed, expired Job that uses a Secret, and an unmanaged one (no warden labels) that
    # uses another: both are holders, only the first is governed.
    job = body("batch/v1", "Job", "train", expires=t - HOUR)
    job["spec"]["template"]["spec"] = uses("used")
    create(kube_admin, namespace, job)
    plain = create(kube_admin, namespace, body("v1", "Secret", "plain-used", expires=t - HOUR))
    request_json(
        kube_admin,
        "POST",
        f"/apis/batch/v1/namespaces/{namespace}/jobs",
        body={
            "metadata": {"name": "unmanaged"},
            "spec": {
                "managedBy": "warden.kaptain.io/tests",
                "template": {"spec": uses("plain-used")},
            },
        },
    )

    swept = sweeper(kube_admin, POLICY, namespace, dry_run=True)
    counting = CountingApi(swept.api)
    swept.api = counting
    report = swept.run_once(now=t)

    jobs = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    tfjobs = f"/apis/kubeflow.org/v1/namespaces/{namespace}/tfjobs"
    assert counting.gets[jobs] == 1, counting.gets
    assert counting.gets[tfjobs] == 1, counting.gets
    actions = {(e.kind, e.name): (e.action, e.reason) for e in report.entries}
    assert actions[("Secret", "used")][1].startswith("kept: in use by Job/train")
    assert actions[("Secret", "plain-used")][1].startswith("kept: in use by Job/unmanaged")
    assert actions[("Secret", "unused")][0] == "delete"
    assert actions[("Job", "train")][0] == "delete"
    assert ("Job", "unmanaged") not in actions  # listed as a holder, never governed
    for obj in (used, unused, plain):
        assert exists(kube_admin, namespace, obj) is not None  # a dry run


def test_without_a_due_secret_governed_kinds_are_listed_by_label_as_metadata(kube_admin, namespace):
    t = now()
    create(kube_admin, namespace, body("v1", "Secret", "fresh", expires=t + HOUR))
    create(kube_admin, namespace, body("batch/v1", "Job", "train", expires=t - HOUR))
    swept = sweeper(kube_admin, POLICY, namespace, dry_run=True)
    counting = CountingApi(swept.api)
    swept.api = counting
    report = swept.run_once(now=t)
    assert {(e.kind, e.name, e.action) for e in report.entries} == {
        ("Secret", "fresh", "keep"),
        ("Job", "train", "delete"),
    }
    # No Secret is due: no in-use check, so no holder kind is read beyond the governed lists.
    assert f"/api/v1/namespaces/{namespace}/pods" not in counting.gets
    assert counting.gets[f"/apis/batch/v1/namespaces/{namespace}/jobs"] == 1
