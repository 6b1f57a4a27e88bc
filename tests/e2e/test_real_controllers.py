"""Tier 3 with the real controllers: KServe v0.20.0, Knative Serving v0.48.1 (Knative v1.21.1) and
the training-operator v1.9.2, built from the Go module proxy (hack/test-assets) and run
out-of-cluster against the control plane, with the warden's webhooks registered.

A notebook (a Pod's bound ServiceAccount token of `default-editor`) deploys, redeploys and
deletes a model with the KServe SDK and starts a TFJob with the training SDK, each in its own
PyPI environment (hack/sdk-envs); the controllers do the rest, as in a cluster.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s

from kaptain_warden.kube.client import get_json, request_json
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.policies.owner import owner_label_value
from kaptain_warden.policies.timestamps import format_time
from kaptain_warden.testing.controllers import (
    KNATIVE_USER,
    KSERVE_USER,
    TRAINING_OPERATOR_USER,
    RealControllers,
)
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.notebook import Notebook
from kaptain_warden.testing.stack import (
    WardenStack,
    create_profile_namespace,
    notebook_user,
)
from kaptain_warden.testing.upstream import default_crd_files, find_upstream
from polling import eventually
from sweeper_kit import now, run_cli

pytestmark = pytest.mark.e2e

KEYS = MetadataKeys()
NAMESPACE = "team-serving"
ISVC = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices"
KNATIVE = f"/apis/serving.knative.dev/v1/namespaces/{NAMESPACE}"
TFJOBS = f"/apis/kubeflow.org/v1/namespaces/{NAMESPACE}/tfjobs"
#: Controllers reconcile within a second or two; the margin is for a loaded 2-core machine.
WAIT = 90.0
T = TypeVar("T")


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[ControlPlane, WardenStack, RealControllers]]:
    """A control plane of its own (the controllers' CRDs installed before the garbage collector
    starts), the warden registered, and the three controllers running."""
    upstream = find_upstream()
    with (
        ControlPlane(
            controller_manager=True, crds=default_crd_files(upstream, controllers=True)
        ) as plane,
        WardenStack(plane) as stack,
        RealControllers(plane, upstream) as controllers,
    ):
        print(
            f"\ncontrol plane {plane.startup_seconds:.1f}s, "
            f"controllers {controllers.startup_seconds:.1f}s to start"
        )
        with plane.api_client() as admin:
            create_profile_namespace(admin, NAMESPACE)
        yield plane, stack, controllers


@pytest.fixture(scope="module")
def admin(world) -> Iterator[k8s.ApiClient]:
    plane, _, _ = world
    with plane.api_client() as client:
        yield client


@pytest.fixture(scope="module")
def notebook(world, tmp_path_factory) -> Notebook:
    plane, _, _ = world
    return Notebook.open(plane, NAMESPACE, tmp_path_factory.mktemp("notebook"))


def _waited(world, probe: Callable[[], T], what: str) -> T:
    """`eventually(probe)`, failing at once when a controller exits, and with the end of the
    controllers' logs when the wait times out."""
    _, _, controllers = world

    def checked() -> T:
        controllers.check()
        return probe()

    try:
        return eventually(checked, what, WAIT)
    except pytest.fail.Exception:
        logs = "\n".join(
            f"--- {name}:\n{controllers.log_tail(name)}"
            for name in ("kserve", "knative-serving", "training-operator")
        )
        pytest.fail(f"timed out waiting for {what}; the controllers' logs end with:\n{logs}")


def _get(client: k8s.ApiClient, path: str) -> dict[str, Any] | None:
    try:
        return get_json(client, path)
    except ApiError as error:
        if error.status == 404:
            return None
        raise


def _items(client: k8s.ApiClient, path: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(client, path, query=[("labelSelector", selector)]).get(
        "items", []
    )
    return items


def _assert_stamped(obj: dict[str, Any], rule: str) -> None:
    """Managed, owned by the notebook, under `rule`; no user key a parent could have passed on."""
    what = f"{obj['kind']} {obj['metadata']['name']}"
    labels = obj["metadata"].get("labels") or {}
    annotations = obj["metadata"].get("annotations") or {}
    owner = notebook_user(NAMESPACE)
    assert labels.get(KEYS.managed) == "true", what
    assert labels.get(KEYS.rule) == rule, what
    assert labels.get(KEYS.owner) == owner_label_value(owner), what
    assert annotations.get(KEYS.owner) == owner, what
    assert KEYS.created_at in annotations, what
    for user_key in (KEYS.ttl, KEYS.expires_at, KEYS.keep):
        assert user_key not in annotations, (what, user_key)


MODELS = """
from kubernetes.client import V1ObjectMeta
from kserve import (
    KServeClient, V1beta1InferenceService, V1beta1InferenceServiceSpec, V1beta1PredictorSpec,
    V1beta1SKLearnSpec,
)

client = KServeClient()

def isvc(version):
    return V1beta1InferenceService(
        api_version="serving.kserve.io/v1beta1",
        kind="InferenceService",
        metadata=V1ObjectMeta(name="iris", namespace=NAMESPACE),
        spec=V1beta1InferenceServiceSpec(
            predictor=V1beta1PredictorSpec(
                sklearn=V1beta1SKLearnSpec(storage_uri=f"gs://models/iris/{version}")
            )
        ),
    )
"""


def _revisions(admin: k8s.ApiClient) -> dict[str, dict[str, Any]]:
    selector = "serving.knative.dev/configuration=iris-predictor"
    return {r["metadata"]["name"]: r for r in _items(admin, f"{KNATIVE}/revisions", selector)}


def _latest_created_revision(admin: k8s.ApiClient) -> str | None:
    status = get_json(admin, f"{ISVC}/iris").get("status") or {}
    latest: str | None = (
        status.get("components", {}).get("predictor", {}).get("latestCreatedRevision")
    )
    return latest


def _sweep(world, *at: str) -> list[dict[str, Any]]:
    plane, _, _ = world
    result = run_cli(
        "sweep",
        "--dry-run",
        "--namespace",
        NAMESPACE,
        "--output",
        "json",
        *(("--at", at[0]) if at else ()),
        kubeconfig=plane.kubeconfig_path,
    )
    report: list[dict[str, Any]] = json.loads(result.stdout)
    return report


def _deleted(report: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["kind"], e["name"]) for e in report if e["action"] == "delete"}


def test_a_notebook_deploys_redeploys_and_deletes_a_model(world, admin, notebook) -> None:
    began = time.monotonic()
    with notebook.kernel("kserve") as kernel:
        kernel.run(f"NAMESPACE = {NAMESPACE!r}")
        kernel.run(MODELS)

        # Deploy. KServe (its own defaulter included) makes the predictor's Knative Service,
        # Knative its Configuration, Route and first Revision.
        kernel.run('client.create(isvc("v1"))')
        created = get_json(admin, f"{ISVC}/iris")
        _assert_stamped(created, "inference-services")
        assert created["spec"]["predictor"]["model"]["modelFormat"]["name"] == "sklearn"
        ksvc = _waited(
            world,
            lambda: _get(admin, f"{KNATIVE}/services/iris-predictor"),
            f"KServe ({KSERVE_USER}) to create the Knative Service",
        )
        _assert_stamped(ksvc, "knative-serving")
        assert ksvc["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
        for kind in ("configurations", "routes"):
            made = _waited(
                world,
                lambda kind=kind: _get(admin, f"{KNATIVE}/{kind}/iris-predictor"),
                f"Knative ({KNATIVE_USER}) to create the {kind[:-1]}",
            )
            _assert_stamped(made, "knative-serving")
        first = _waited(
            world, lambda: _revisions(admin).get("iris-predictor-00001"), "the first Revision"
        )
        _assert_stamped(first, "knative-revisions")
        # KServe writes the new Revision into the InferenceService's status once it sees it.
        # `replace` below reads the resourceVersion, then writes: a status write landing in
        # between is a 409 Conflict for the notebook, in a cluster as here (CI saw it once).
        _waited(
            world,
            lambda: _latest_created_revision(admin) == "iris-predictor-00001",
            "KServe to record the first Revision in the InferenceService's status",
        )
        deployed = time.monotonic()

        # Redeploy: `replace` sends the user's own manifest (with the resourceVersion it looked
        # up) for a new model version, then `patch`es twice.
        kernel.run('client.replace("iris", isvc("v2"))')
        _waited(world, lambda: "iris-predictor-00002" in _revisions(admin), "a second Revision")
        _assert_stamped(get_json(admin, f"{ISVC}/iris"), "inference-services")
        for version, revision in (("v3", "iris-predictor-00003"), ("v4", "iris-predictor-00004")):
            kernel.run(f'client.patch("iris", isvc("{version}"))')
            _waited(world, lambda revision=revision: revision in _revisions(admin), revision)
    revisions = _revisions(admin)
    for revision in revisions.values():
        _assert_stamped(revision, "knative-revisions")
    redeployed = time.monotonic()

    # Retention. Revisions become ready only when their Pods run (there is no kubelet here),
    # so the Route never moves traffic and Knative's labeler never retires them. Replayed: the
    # labeler's patch when a revision leaves the route, as Knative's controller sends it
    # (knative.dev/serving v0.48.1, pkg/reconciler/labeler/accessors.go, makeMetadataPatch and
    # markRoutingState: routingState=reserve, routingStateModified=now, routes annotation
    # removed), for every revision but the newest.
    retired_at = now()
    with _impersonating(world, KNATIVE_USER, "knative-serving") as knative:
        for name in ("iris-predictor-00001", "iris-predictor-00002", "iris-predictor-00003"):
            request_json(
                knative,
                "PATCH",
                f"{KNATIVE}/revisions/{name}",
                body={
                    "metadata": {
                        "labels": {"serving.knative.dev/routingState": "reserve"},
                        "annotations": {
                            "serving.knative.dev/routingStateModified": format_time(retired_at),
                            "serving.knative.dev/routes": None,
                        },
                    }
                },
                content_type="application/merge-patch+json",
            )
    serving = {
        ("InferenceService", "iris"),
        ("Service", "iris-predictor"),
        ("Configuration", "iris-predictor"),
        ("Route", "iris-predictor"),
        ("Revision", "iris-predictor-00004"),
    }
    # The default policy: minNonActive 2, retainSinceCreate 48h, retainSinceLastActive 15h.
    assert _deleted(_sweep(world)) == set()
    assert _deleted(_sweep(world, format_time(retired_at + timedelta(hours=24)))) == set()
    later = _sweep(world, format_time(retired_at + timedelta(hours=49)))
    assert _deleted(later) == {("Revision", "iris-predictor-00001")}
    kept = {(e["kind"], e["name"]) for e in later if e["action"] != "delete"}
    assert serving <= kept
    a_month = _sweep(world, format_time(retired_at + timedelta(days=31)))
    assert _deleted(a_month) == {("Revision", "iris-predictor-00001")}
    swept = time.monotonic()

    # Delete: the garbage collector removes everything KServe and Knative made.
    with notebook.kernel("kserve") as kernel:
        kernel.run(f"from kserve import KServeClient; KServeClient().delete('iris', {NAMESPACE!r})")
    for kind in ("services", "configurations", "routes"):
        _waited(
            world,
            lambda kind=kind: _get(admin, f"{KNATIVE}/{kind}/iris-predictor") is None,
            f"the garbage collector to delete the {kind[:-1]}",
        )
    _waited(world, lambda: not _revisions(admin), "the garbage collector to delete the Revisions")
    print(
        f"\nserving scenario: deploy {deployed - began:.1f}s, 3 redeploys "
        f"{redeployed - deployed:.1f}s, 4 sweeps {swept - redeployed:.1f}s, "
        f"delete {time.monotonic() - swept:.1f}s"
    )


TFJOB = """
from kubeflow.training import TrainingClient

TrainingClient(namespace=NAMESPACE).create_job(
    name="mnist", job_kind="TFJob", base_image="registry.example/tf-mnist:1", num_workers=1
)
"""


def test_a_tfjob_gets_its_pods_from_the_training_operator(world, admin, notebook) -> None:
    began = time.monotonic()
    with notebook.kernel("training") as kernel:
        kernel.run(f"NAMESPACE = {NAMESPACE!r}")
        kernel.run(TFJOB)
    created = get_json(admin, f"{TFJOBS}/mnist")
    assert created["metadata"]["labels"][KEYS.rule] == "training-jobs"
    assert created["metadata"]["annotations"][KEYS.owner] == notebook.user
    # The warden's native TTL: the training-operator deletes the job 7 days after it finishes.
    assert created["spec"]["runPolicy"]["ttlSecondsAfterFinished"] == 7 * 24 * 3600

    pod = _waited(
        world,
        lambda: _get(admin, f"/api/v1/namespaces/{NAMESPACE}/pods/mnist-worker-0"),
        f"the training-operator ({TRAINING_OPERATOR_USER}) to create the worker Pod",
    )
    (reference,) = pod["metadata"]["ownerReferences"]
    assert (reference["kind"], reference["name"], reference["uid"]) == (
        "TFJob",
        "mnist",
        created["metadata"]["uid"],
    )
    job = _waited(
        world,
        lambda: (
            (get_json(admin, f"{TFJOBS}/mnist").get("status") or {}).get("conditions")
            and get_json(admin, f"{TFJOBS}/mnist")
        ),
        "the training-operator to report the job's status",
    )
    assert job["spec"]["runPolicy"]["ttlSecondsAfterFinished"] == 7 * 24 * 3600
    print(f"\ntraining scenario: {time.monotonic() - began:.1f}s")


def _impersonating(world, user: str, namespace: str):
    plane, _, _ = world
    return plane.impersonating_api_client(
        user, ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
    )
