"""Small factories for the objects the Kaptain SDK creates and the AdmissionReviews about them."""

from __future__ import annotations

import base64
import copy
import uuid
from typing import Any

import jsonpatch
import orjson

from kaptain_warden.policies.kinds import registered_kind

P = "warden.kaptain.io"
NAMESPACE = "team-a"
NOTEBOOK = f"system:serviceaccount:{NAMESPACE}:default-editor"
NOTEBOOK_GROUPS = (
    "system:serviceaccounts",
    f"system:serviceaccounts:{NAMESPACE}",
    "system:authenticated",
)
STRANGER = "jane@example.com"
KNATIVE = "system:serviceaccount:knative-serving:controller"
ADMIN = "kubernetes-admin"
ADMIN_GROUPS = ("system:masters", "system:authenticated")


def _resource(api_version: str, kind: str) -> str:
    """The resource of a kind, as the registry of kinds names it; the one kind here it does not
    hold (ConfigMap, which no rule governs) is `configmaps`, its name in lower case plus s."""
    entry = registered_kind(api_version, kind)
    return entry.resource if entry is not None else f"{kind.lower()}s"


def _metadata(
    name: str | None,
    namespace: str,
    labels: dict[str, str] | None,
    annotations: dict[str, str] | None,
    generate_name: str | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"namespace": namespace}
    if name is not None:
        metadata["name"] = name
    if generate_name is not None:
        metadata["generateName"] = generate_name
    if labels is not None:
        metadata["labels"] = labels
    if annotations is not None:
        metadata["annotations"] = annotations
    return metadata


def secret(
    name: str | None = "registry-credentials",
    *,
    namespace: str = NAMESPACE,
    type_: str = "kubernetes.io/dockerconfigjson",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    generate_name: str | None = None,
    payload_bytes: int = 64,
) -> dict[str, Any]:
    """A registry-credentials Secret; `payload_bytes` of data make it realistically large."""
    auth = base64.b64encode(b"u" * payload_bytes).decode()
    config = orjson.dumps({"auths": {"registry.example.com": {"auth": auth}}})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(name, namespace, labels, annotations, generate_name),
        "type": type_,
        "data": {".dockerconfigjson": base64.b64encode(config).decode()},
    }


def job(
    name: str = "build-model-image",
    *,
    namespace: str = NAMESPACE,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    ttl_seconds_after_finished: int | None = None,
) -> dict[str, Any]:
    """An image-build batch/v1 Job."""
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "kaniko", "image": "gcr.io/kaniko-project/executor"}],
            }
        },
    }
    if ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(name, namespace, labels, annotations),
        "spec": spec,
    }


def _replica(replicas: int, env_vars: int) -> dict[str, Any]:
    env = [
        {"name": f"SETTING_{i:03d}", "value": f"value-{i:03d}-" + "x" * 40} for i in range(env_vars)
    ]
    return {
        "replicas": replicas,
        "restartPolicy": "OnFailure",
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "tensorflow",
                        "image": "registry.example.com/team-a/mnist:1.0.3",
                        "command": ["python", "-m", "trainer.task", "--epochs", "10"],
                        "env": env,
                        "resources": {
                            "limits": {"cpu": "2", "memory": "4Gi"},
                            "requests": {"cpu": "1", "memory": "2Gi"},
                        },
                    }
                ]
            }
        },
    }


def tfjob(
    name: str = "mnist-train",
    *,
    namespace: str = NAMESPACE,
    shape: str = "runPolicy",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    env_vars: int = 2,
    kind: str = "TFJob",
) -> dict[str, Any]:
    """A training-operator job; `shape` is `runPolicy`, `legacy` (tf-operator v1) or `bare`."""
    spec: dict[str, Any] = {
        "tfReplicaSpecs": {"Chief": _replica(1, env_vars), "Worker": _replica(2, env_vars)}
    }
    if shape == "runPolicy":
        spec["runPolicy"] = {"cleanPodPolicy": "None"}
    elif shape == "legacy":
        spec["cleanPodPolicy"] = "None"
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": kind,
        "metadata": _metadata(name, namespace, labels, annotations),
        "spec": spec,
    }


def experiment(name: str = "mnist-tune", *, namespace: str = NAMESPACE) -> dict[str, Any]:
    """A Katib Experiment from Model.tune()."""
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": _metadata(name, namespace, None, None),
        "spec": {
            "objective": {"type": "maximize", "objectiveMetricName": "accuracy"},
            "algorithm": {"algorithmName": "random"},
            "maxTrialCount": 12,
            "parallelTrialCount": 3,
        },
    }


def inference_service(
    name: str = "mnist",
    *,
    namespace: str = NAMESPACE,
    group: str = "serving.kserve.io",
) -> dict[str, Any]:
    """An InferenceService from Model.deploy() (KServe, or KFServing with its own group)."""
    return {
        "apiVersion": f"{group}/v1beta1",
        "kind": "InferenceService",
        "metadata": _metadata(name, namespace, {}, None),
        "spec": {"predictor": {"tensorflow": {"storageUri": "s3://models/mnist"}}},
    }


def revision(
    name: str = "mnist-predictor-00002",
    *,
    namespace: str = NAMESPACE,
    configuration: str = "mnist-predictor",
) -> dict[str, Any]:
    """A Knative Revision as the Knative controller creates it: owned by its Configuration."""
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Revision",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "serving.knative.dev/configuration": configuration,
                "serving.kserve.io/inferenceservice": "mnist",
            },
            "ownerReferences": [
                {
                    "apiVersion": "serving.knative.dev/v1",
                    "kind": "Configuration",
                    "name": configuration,
                    "uid": str(uuid.uuid4()),
                    "controller": True,
                }
            ],
        },
        "spec": {"containers": [{"image": "registry.example.com/team-a/mnist-server:2"}]},
    }


def config_map(name: str = "settings", *, namespace: str = NAMESPACE) -> dict[str, Any]:
    """A kind no rule governs."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(name, namespace, None, None),
        "data": {"a": "b"},
    }


def review(
    obj: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    user: str = NOTEBOOK,
    groups: tuple[str, ...] = NOTEBOOK_GROUPS,
    old: dict[str, Any] | None = None,
    uid: str | None = None,
    namespace: str | None = None,
    sub_resource: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """An admission.k8s.io/v1 AdmissionReview as the API server sends it."""
    subject = obj if obj is not None else old
    assert subject is not None, "a review needs an object or an old object"
    api_version, kind = subject["apiVersion"], subject["kind"]
    group, _, version = api_version.rpartition("/")
    gvk = {"group": group, "version": version, "kind": kind}
    gvr = {"group": group, "version": version, "resource": _resource(api_version, kind)}
    metadata = subject.get("metadata", {})
    request: dict[str, Any] = {
        "uid": uid or str(uuid.uuid4()),
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "namespace": namespace if namespace is not None else metadata.get("namespace", NAMESPACE),
        "operation": operation,
        "userInfo": {"username": user, "uid": str(uuid.uuid4()), "groups": list(groups)},
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": f"{operation.title()}Options"},
    }
    if "name" in metadata:
        request["name"] = metadata["name"]
    if sub_resource is not None:
        request["subResource"] = sub_resource
        request["requestSubResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def patch_ops(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The RFC 6902 operations of an answer (empty when it carries no patch)."""
    response = answer["response"]
    if "patch" not in response:
        assert "patchType" not in response
        return []
    assert response["patchType"] == "JSONPatch"
    ops: list[dict[str, Any]] = orjson.loads(base64.b64decode(response["patch"]))
    return ops


def patched(obj: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """`obj` with the answer's patch applied by an independent RFC 6902 implementation."""
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(obj), patch_ops(answer))
    return result


def labels(obj: dict[str, Any]) -> dict[str, str]:
    """The object's labels (empty when absent)."""
    found: dict[str, str] = obj.get("metadata", {}).get("labels") or {}
    return found


def annotations(obj: dict[str, Any]) -> dict[str, str]:
    """The object's annotations (empty when absent)."""
    found: dict[str, str] = obj.get("metadata", {}).get("annotations") or {}
    return found
