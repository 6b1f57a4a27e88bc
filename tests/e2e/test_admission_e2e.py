"""Tier 3: the real admission server, registered with the real API server, judged by it."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kaptain_warden.kube.client import get_json, request_json
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.policies.owner import owner_label_value
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.stack import WardenStack, create_profile_namespace, notebook_user

KEYS = MetadataKeys()
KNATIVE = "system:serviceaccount:knative-serving:controller"

PATHS = {
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "TFJob": "/apis/kubeflow.org/v1/namespaces/{ns}/tfjobs",
    "PyTorchJob": "/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs",
    "Experiment": "/apis/kubeflow.org/v1beta1/namespaces/{ns}/experiments",
    "KServe": "/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices",
    "KFServing": "/apis/serving.kubeflow.org/v1beta1/namespaces/{ns}/inferenceservices",
    "KnativeService": "/apis/serving.knative.dev/v1/namespaces/{ns}/services",
    "Revision": "/apis/serving.knative.dev/v1/namespaces/{ns}/revisions",
}

POD_TEMPLATE = {
    "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "registry.example/kaniko:1"}],
    }
}


def body(kind: str, name: str, **metadata: Any) -> dict[str, Any]:
    meta = {"name": name, **metadata}
    if kind == "Secret":
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta,
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": "e30="},
        }
    if kind == "Job":
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta,
            "spec": {"template": POD_TEMPLATE},
        }
    if kind in ("TFJob", "PyTorchJob"):
        replicas = "tfReplicaSpecs" if kind == "TFJob" else "pytorchReplicaSpecs"
        return {
            "apiVersion": "kubeflow.org/v1",
            "kind": kind,
            "metadata": meta,
            "spec": {replicas: {"Worker": {"replicas": 1, "template": POD_TEMPLATE}}},
        }
    if kind == "Experiment":
        return {
            "apiVersion": "kubeflow.org/v1beta1",
            "kind": "Experiment",
            "metadata": meta,
            "spec": {"maxTrialCount": 3},
        }
    if kind == "KServe":
        return {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": meta,
            "spec": {"predictor": {}},
        }
    if kind == "KFServing":
        return {
            "apiVersion": "serving.kubeflow.org/v1beta1",
            "kind": "InferenceService",
            "metadata": meta,
            "spec": {"predictor": {}},
        }
    if kind == "KnativeService":
        return {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {},
        }
    if kind == "Revision":
        return {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Revision",
            "metadata": meta,
            "spec": {},
        }
    raise AssertionError(kind)


@pytest.fixture(scope="module")
def warden(control_plane: ControlPlane) -> Iterator[WardenStack]:
    with WardenStack(control_plane, failure_policy="Fail") as stack:
        yield stack


@pytest.fixture
def profile(warden: WardenStack, kube_admin: k8s.ApiClient) -> str:
    """A fresh Kubeflow-profile-like namespace whose default-editor may create SDK objects."""
    name = f"team-{uuid.uuid4().hex[:8]}"
    create_profile_namespace(kube_admin, name)
    return name


@pytest.fixture
def notebook(control_plane: ControlPlane, profile: str) -> Iterator[k8s.ApiClient]:
    with control_plane.impersonating_api_client(notebook_user(profile)) as api_client:
        yield api_client


def create(
    api: k8s.ApiClient, kind: str, namespace: str, obj: dict[str, Any], **query: str
) -> dict[str, Any]:
    return request_json(
        api, "POST", PATHS[kind].format(ns=namespace), body=obj, query=list(query.items())
    )


def denial(api: k8s.ApiClient, kind: str, namespace: str, obj: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as info:
        create(api, kind, namespace, obj)
    assert info.value.status == 403, info.value.body
    return json.loads(info.value.body)["message"]


EXPECTED = [
    # kind, rule, ttl annotation, ttl-after-finished annotation, native TTL path
    ("Secret", "credentials-secrets", "1d", None, None),
    ("Job", "build-jobs", None, "1h", ("spec", "ttlSecondsAfterFinished")),
    ("TFJob", "training-jobs", None, "7d", ("spec", "runPolicy", "ttlSecondsAfterFinished")),
    ("PyTorchJob", "training-jobs", None, "7d", ("spec", "runPolicy", "ttlSecondsAfterFinished")),
    ("Experiment", "katib-experiments", None, "7d", None),
    ("KServe", "inference-services", None, None, None),
    ("KFServing", "inference-services", None, None, None),
    ("KnativeService", "knative-serving", None, None, None),
]


@pytest.mark.parametrize(
    ("kind", "rule", "ttl", "after", "native"), EXPECTED, ids=[e[0] for e in EXPECTED]
)
def test_every_sdk_kind_is_stamped_as_the_policy_says(
    notebook, profile, kind, rule, ttl, after, native
):
    created = create(notebook, kind, profile, body(kind, f"obj-{kind.lower()}"))
    labels = created["metadata"]["labels"]
    annotations = created["metadata"]["annotations"]
    owner = notebook_user(profile)
    assert labels[KEYS.managed] == "true"
    assert labels[KEYS.owner] == owner_label_value(owner)
    assert labels[KEYS.rule] == rule
    assert annotations[KEYS.owner] == owner
    assert KEYS.created_at in annotations
    assert annotations.get(KEYS.ttl) == ttl
    assert (KEYS.expires_at in annotations) is (ttl is not None)
    assert annotations.get(KEYS.ttl_after_finished) == after
    if native is not None:
        value: Any = created
        for step in native:
            value = value[step]
        assert value == {"1h": 3600, "7d": 604800}[after]


def test_legacy_tf_operator_shape_gets_native_ttl_under_spec(notebook, profile):
    legacy = body("TFJob", "legacy")
    legacy["spec"]["cleanPodPolicy"] = "Running"
    created = create(notebook, "TFJob", profile, legacy)
    assert created["spec"]["ttlSecondsAfterFinished"] == 604800
    assert "runPolicy" not in created["spec"]


def test_forged_owner_is_rejected_with_the_webhooks_message(notebook, profile):
    message = denial(
        notebook,
        "Secret",
        profile,
        body("Secret", "forged", annotations={KEYS.owner: "someone-else"}),
    )
    assert f'annotation {KEYS.owner}: "someone-else" is not the owner of this object' in message


def test_ttl_above_max_is_rejected(notebook, profile):
    message = denial(
        notebook, "Secret", profile, body("Secret", "long", annotations={KEYS.ttl: "90d"})
    )
    assert "is above the maximum of 30d" in message


def test_user_ttl_within_max_is_honoured(notebook, profile):
    created = create(
        notebook, "Secret", profile, body("Secret", "short", annotations={KEYS.ttl: "2h"})
    )
    annotations = created["metadata"]["annotations"]
    assert annotations[KEYS.ttl] == "2h"
    assert KEYS.expires_at in annotations


def test_update_removing_warden_metadata_is_rejected(notebook, profile):
    created = create(notebook, "Secret", profile, body("Secret", "kept"))
    path = PATHS["Secret"].format(ns=profile) + "/kept"
    patch = [{"op": "remove", "path": f"/metadata/labels/{KEYS.managed.replace('/', '~1')}"}]
    with pytest.raises(ApiException) as info:
        request_json(
            notebook, "PATCH", path, body=patch, content_type="application/json-patch+json"
        )
    assert info.value.status == 403
    assert (
        f"label {KEYS.managed} is immutable after creation"
        in json.loads(info.value.body)["message"]
    )
    assert get_json(notebook, path)["metadata"]["labels"] == created["metadata"]["labels"]


def test_update_of_unrelated_fields_is_allowed(notebook, profile):
    create(notebook, "Secret", profile, body("Secret", "edited"))
    path = PATHS["Secret"].format(ns=profile) + "/edited"
    patched = request_json(
        notebook,
        "PATCH",
        path,
        body={"metadata": {"labels": {"app": "x"}}},
        content_type="application/merge-patch+json",
    )
    assert patched["metadata"]["labels"]["app"] == "x"
    assert patched["metadata"]["labels"][KEYS.managed] == "true"


def test_generate_name_objects_are_stamped(notebook, profile):
    obj = body("Secret", "")
    del obj["metadata"]["name"]
    obj["metadata"]["generateName"] = "build-creds-"
    created = create(notebook, "Secret", profile, obj)
    assert created["metadata"]["name"].startswith("build-creds-")
    assert created["metadata"]["labels"][KEYS.rule] == "credentials-secrets"


def test_server_side_dry_run_is_stamped_and_persists_nothing(notebook, profile):
    created = create(notebook, "Secret", profile, body("Secret", "dry"), dryRun="All")
    assert created["metadata"]["labels"][KEYS.managed] == "true"
    with pytest.raises(ApiException) as info:
        get_json(notebook, PATHS["Secret"].format(ns=profile) + "/dry")
    assert info.value.status == 404


def test_kubectl_dry_run_server_shows_the_stamp(control_plane, warden, profile, tmp_path):
    manifest = tmp_path / "secret.json"
    manifest.write_text(json.dumps(body("Secret", "kubectl-dry")))
    result = control_plane.run_kubectl(
        "create",
        "--dry-run=server",
        "-o",
        "json",
        "-n",
        profile,
        f"--as={notebook_user(profile)}",
        "-f",
        str(manifest),
    )
    assert json.loads(result.stdout)["metadata"]["labels"][KEYS.managed] == "true"


@pytest.mark.parametrize("namespace", ["kube-system", "kaptain-warden"])
def test_excluded_namespaces_are_untouched(control_plane, kube_admin, warden, namespace):
    create_profile_namespace(kube_admin, namespace)
    with control_plane.impersonating_api_client(notebook_user(namespace)) as api:
        name = f"s-{uuid.uuid4().hex[:6]}"
        created = create(
            api, "Secret", namespace, body("Secret", name, annotations={KEYS.owner: "anyone"})
        )
    assert KEYS.managed not in (created["metadata"].get("labels") or {})
    assert created["metadata"]["annotations"] == {KEYS.owner: "anyone"}


def test_objects_created_by_other_identities_are_not_governed(control_plane, warden, profile):
    with control_plane.impersonating_api_client("ops-admin", ["system:masters"]) as admin:
        created = create(admin, "Secret", profile, body("Secret", "admin-secret"))
    assert KEYS.managed not in (created["metadata"].get("labels") or {})


def test_revision_created_by_knative_inherits_the_inference_service_owner(
    control_plane, kube_admin, notebook, profile
):
    create(notebook, "KServe", profile, body("KServe", "mnist"))
    with control_plane.impersonating_api_client(KNATIVE, ["system:serviceaccounts"]) as knative:
        # The Knative controller has cluster-wide rights on its kinds (cluster-admin in this test).
        request_json(
            kube_admin,
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            body={
                "metadata": {"name": f"knative-{profile}"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": "controller", "namespace": "knative-serving"}
                ],
            },
        )
        revision = body(
            "Revision",
            "mnist-predictor-00001",
            labels={
                "serving.kserve.io/inferenceservice": "mnist",
                "serving.knative.dev/configuration": "mnist-predictor",
            },
        )
        created = create(knative, "Revision", profile, revision)
    assert created["metadata"]["annotations"][KEYS.owner] == notebook_user(profile)
    assert created["metadata"]["labels"][KEYS.rule] == "knative-revisions"


def status_update(api: k8s.ApiClient, kind: str, namespace: str, name: str) -> dict[str, Any]:
    path = PATHS[kind].format(ns=namespace) + f"/{name}/status"
    status = {
        "status": {
            "conditions": [
                {
                    "type": "Succeeded",
                    "status": "True",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        }
    }
    return request_json(
        api, "PATCH", path, body=status, content_type="application/merge-patch+json"
    )


def test_failure_policy_when_the_webhook_is_down(warden, notebook, kube_admin, profile):
    """Fail: governed creates are refused, status updates still pass (not intercepted);
    Ignore: governed creates pass unstamped."""
    create(notebook, "TFJob", profile, body("TFJob", "running"))
    warden.stop_server()
    try:
        with pytest.raises(ApiException) as info:
            create(notebook, "Secret", profile, body("Secret", "while-down"))
        assert "failed calling webhook" in str(info.value.body)
        patched = status_update(kube_admin, "TFJob", profile, "running")
        assert patched["status"]["conditions"][0]["type"] == "Succeeded"

        warden.register(failure_policy="Ignore")
        deadline_ok = False
        for _ in range(100):
            try:
                created = create(
                    notebook, "Secret", profile, body("Secret", f"ignored-{uuid.uuid4().hex[:6]}")
                )
            except ApiException:
                continue
            deadline_ok = True
            break
        assert deadline_ok, "Ignore did not take effect"
        assert KEYS.managed not in (created["metadata"].get("labels") or {})
    finally:
        warden.start_server()
        warden.register(failure_policy="Fail")
        warden.wait_until_effective()


def test_a_stopped_stack_leaves_no_process_and_no_files(control_plane):
    stack = WardenStack(control_plane, name="short-lived").start()
    server_pid = stack._server.pid
    work_dir = stack.work_dir
    stack.stop()
    assert not work_dir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)
    with control_plane.api_client() as admin, pytest.raises(ApiException) as info:
        get_json(
            admin, "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/short-lived"
        )
    assert info.value.status == 404
