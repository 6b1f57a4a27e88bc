"""Owner inheritance reads parents through the real API server, cached and within a budget."""

from __future__ import annotations

import time

import pytest
from kubernetes import client as k8s

from kaptain_warden.kube.parents import ParentLookupError, ParentOwnerResolver
from kaptain_warden.policies.metadata import MetadataKeys

KEYS = MetadataKeys()


def create(api: k8s.ApiClient, namespace: str, obj: dict) -> dict:
    group, _, version = obj["apiVersion"].rpartition("/")
    plural = {
        "InferenceService": "inferenceservices",
        "Service": "services",
        "Configuration": "configurations",
    }[obj["kind"]]
    return k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        group, version, namespace, plural, obj
    )


def isvc(name: str, owner: str | None) -> dict:
    metadata: dict = {"name": name}
    if owner:
        metadata["annotations"] = {KEYS.owner: owner}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {},
    }


@pytest.fixture
def resolver(kube_admin: k8s.ApiClient) -> ParentOwnerResolver:
    return ParentOwnerResolver(kube_admin, keys=KEYS, budget_seconds=2.0)


def test_revision_inherits_from_the_inference_service_label(resolver, kube_admin, namespace):
    create(kube_admin, namespace, isvc("mnist", "alice"))
    revision = {"metadata": {"labels": {"serving.kserve.io/inferenceservice": "mnist"}}}
    assert resolver.inherited_owner(namespace=namespace, obj=revision) == "alice"


def test_owner_is_found_through_a_chain_of_owner_references(resolver, kube_admin, namespace):
    parent = create(kube_admin, namespace, isvc("mnist", "alice"))
    ksvc = create(
        kube_admin,
        namespace,
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {
                "name": "mnist-predictor",
                "ownerReferences": [
                    {
                        "apiVersion": "serving.kserve.io/v1beta1",
                        "kind": "InferenceService",
                        "name": "mnist",
                        "uid": parent["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {},
        },
    )
    configuration = {
        "metadata": {
            "ownerReferences": [
                {
                    "apiVersion": "serving.knative.dev/v1",
                    "kind": "Service",
                    "name": "mnist-predictor",
                    "uid": ksvc["metadata"]["uid"],
                    "controller": True,
                }
            ]
        }
    }
    assert resolver.inherited_owner(namespace=namespace, obj=configuration) == "alice"


def test_unmanaged_or_missing_parents_give_no_owner(resolver, kube_admin, namespace):
    create(kube_admin, namespace, isvc("unmanaged", None))
    for name in ("unmanaged", "absent"):
        obj = {"metadata": {"labels": {"serving.kserve.io/inferenceservice": name}}}
        assert resolver.inherited_owner(namespace=namespace, obj=obj) is None
    unknown_kind = {
        "metadata": {
            "ownerReferences": [{"apiVersion": "example.com/v1", "kind": "Widget", "name": "w"}]
        }
    }
    assert resolver.inherited_owner(namespace=namespace, obj=unknown_kind) is None


def test_answers_are_cached(kube_admin, namespace):
    calls = []
    resolver = ParentOwnerResolver(kube_admin, keys=KEYS, budget_seconds=2.0)
    create(kube_admin, namespace, isvc("cached", "alice"))
    obj = {"metadata": {"labels": {"serving.kserve.io/inferenceservice": "cached"}}}
    assert resolver.inherited_owner(namespace=namespace, obj=obj) == "alice"
    original = kube_admin.call_api
    kube_admin.call_api = lambda *a, **kw: calls.append(a) or original(*a, **kw)
    try:
        assert resolver.inherited_owner(namespace=namespace, obj=obj) == "alice"
    finally:
        kube_admin.call_api = original
    assert calls == []


def test_an_unreachable_api_server_raises_within_the_budget(control_plane):
    configuration = control_plane.client_configuration()
    configuration.host = "https://127.0.0.1:1"  # nothing listens there
    with k8s.ApiClient(configuration) as api:
        resolver = ParentOwnerResolver(api, keys=KEYS, budget_seconds=0.5)
        obj = {"metadata": {"labels": {"serving.kserve.io/inferenceservice": "x"}}}
        started = time.monotonic()
        with pytest.raises(ParentLookupError, match="failed"):
            resolver.inherited_owner(namespace="default", obj=obj)
        assert time.monotonic() - started < 2.0


def test_an_exhausted_budget_raises(kube_admin, namespace):
    ticks = iter(range(0, 1000, 10))  # every clock read advances 10 s: the budget is gone at once
    resolver = ParentOwnerResolver(
        kube_admin, keys=KEYS, budget_seconds=1.0, clock=lambda: float(next(ticks))
    )
    create(kube_admin, namespace, isvc("slow", "alice"))
    obj = {"metadata": {"labels": {"serving.kserve.io/inferenceservice": "slow"}}}
    with pytest.raises(ParentLookupError, match="budget"):
        resolver.inherited_owner(namespace=namespace, obj=obj)
