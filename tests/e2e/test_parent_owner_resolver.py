"""Owner inheritance reads parents through the real API server, cached and within a budget."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import pytest
from kubernetes import client as k8s

from kaptain_warden.kube.parents import ParentLookupError, ParentOwnerResolver
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.policies.metadata import MetadataKeys

KEYS = MetadataKeys()
POLICY = load_policy()


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
        "spec": {"predictor": {"sklearn": {"storageUri": "s3://models/mnist"}}},
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


class Requests:
    """Counts the requests every ApiClient of this process sends (the resolver has its own)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        original = k8s.ApiClient.call_api

        def counting(client: k8s.ApiClient, method: str, url: str, *args, **kwargs):
            self.paths.append(url)
            return original(client, method, url, *args, **kwargs)

        monkeypatch.setattr(k8s.ApiClient, "call_api", counting)


def test_answers_are_cached(kube_admin, namespace, monkeypatch):
    resolver = ParentOwnerResolver(kube_admin, keys=KEYS, budget_seconds=2.0)
    create(kube_admin, namespace, isvc("cached", "alice"))
    obj = {"metadata": {"labels": {"serving.kserve.io/inferenceservice": "cached"}}}
    requests = Requests(monkeypatch)
    assert resolver.inherited_owner(namespace=namespace, obj=obj) == "alice"
    assert len(requests.paths) == 1
    assert resolver.inherited_owner(namespace=namespace, obj=obj) == "alice"
    assert len(requests.paths) == 1


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


# --- a tenant writes the references: lookups cannot be steered --------------------------------


def job(name: str, owner: str | None = None) -> dict:
    metadata: dict = {"name": name}
    if owner:
        metadata["annotations"] = {KEYS.owner: owner}
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {"template": template},
    }


def owned_by(api_version: str, kind: str, name: str, uid: str = "0f0f0f0f") -> dict:
    reference = {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid}
    return {"metadata": {"ownerReferences": [reference]}}


@pytest.fixture
def other_namespace(kube_admin: k8s.ApiClient) -> str:
    """Another tenant's namespace, holding a Job owned by bob."""
    core = k8s.CoreV1Api(kube_admin)
    name = f"team-b-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    k8s.BatchV1Api(kube_admin).create_namespaced_job(name, job("team-b-private-job", "bob"))
    yield name
    core.delete_namespace(name)


@pytest.mark.parametrize(
    "name",
    [
        "x/../../../{other}/jobs/team-b-private-job",
        "..%2F..%2F..%2F{other}%2Fjobs%2Fteam-b-private-job",
        "x?resourceVersion=99999999999",
        "team-b-private-job?x=1",
        "Team-B-Private-Job",
        "a" * 254,
    ],
)
def test_a_name_no_object_can_have_is_never_asked(
    resolver, namespace, other_namespace, monkeypatch, name
):
    """Unquoted, `..` segments reached another namespace's Job (an owner borrowed across
    namespaces, and an existence oracle), and a resourceVersion held the lookup for seconds."""
    requests = Requests(monkeypatch)
    obj = owned_by("batch/v1", "Job", name.format(other=other_namespace))
    assert resolver.inherited_owner(namespace=namespace, obj=obj) is None
    assert requests.paths == []


def test_only_the_kinds_the_policy_knows_are_read(kube_admin, namespace, monkeypatch):
    create(kube_admin, namespace, isvc("mnist", "alice"))
    secrets_only = [k for k in POLICY.kinds if k.kind == "Secret"]
    resolver = ParentOwnerResolver(kube_admin, keys=KEYS, kinds=secrets_only, budget_seconds=2.0)
    requests = Requests(monkeypatch)
    for reference in (
        owned_by("serving.kserve.io/v1beta1", "InferenceService", "mnist"),
        owned_by("v1", "ConfigMap", "settings"),
        owned_by("v1", "Secret", "registry-credentials"),
        owned_by("example.com/v1", "Widget", "w"),
    ):
        assert resolver.inherited_owner(namespace=namespace, obj=reference) is None
    assert requests.paths == []


def test_the_parent_must_carry_the_referenced_uid(resolver, kube_admin, namespace):
    parent = create(kube_admin, namespace, isvc("mnist", "alice"))
    kind = ("serving.kserve.io/v1beta1", "InferenceService", "mnist")
    assert resolver.inherited_owner(namespace=namespace, obj=owned_by(*kind, uid="guessed")) is None
    right = owned_by(*kind, uid=parent["metadata"]["uid"])
    assert resolver.inherited_owner(namespace=namespace, obj=right) == "alice"


def test_the_lookup_stays_in_the_objects_namespace(
    resolver, kube_admin, namespace, other_namespace
):
    private = k8s.BatchV1Api(kube_admin).read_namespaced_job("team-b-private-job", other_namespace)
    obj = owned_by("batch/v1", "Job", "team-b-private-job", uid=private.metadata.uid)
    assert resolver.inherited_owner(namespace=namespace, obj=obj) is None
    assert resolver.inherited_owner(namespace=other_namespace, obj=obj) == "bob"
    # No namespace (a cluster-scoped object) or an impossible one: nothing to inherit.
    for impossible in ("", "../" + other_namespace, other_namespace + "/"):
        assert resolver.inherited_owner(namespace=impossible, obj=obj) is None


def test_the_client_never_retries(control_plane):
    """Default urllib3 retries turned one failed GET into four, outliving the budget."""
    accepted = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def hang_up() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            accepted.append(connection)
            connection.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    configuration = control_plane.client_configuration()
    configuration.host = f"https://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with k8s.ApiClient(configuration) as api:
            resolver = ParentOwnerResolver(api, keys=KEYS, budget_seconds=5.0)
            obj = {"metadata": {"labels": {"serving.kserve.io/inferenceservice": "x"}}}
            with pytest.raises(ParentLookupError, match="failed"):
                resolver.inherited_owner(namespace="default", obj=obj)
    finally:
        listener.close()
        thread.join(10)
    assert len(accepted) == 1
