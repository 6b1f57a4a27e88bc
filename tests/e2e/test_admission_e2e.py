"""Tier 3: the real admission server, registered with the real API server, judged by it."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from kaptain_warden.kube.client import get_json, request_json
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.policies.owner import owner_label_value
from kaptain_warden.policies.stamping import REINVOCATION_WINDOW
from kaptain_warden.policies.timestamps import format_time, parse_time
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.stack import WardenStack, create_profile_namespace, notebook_user
from polling import eventually

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
            "spec": {"containers": [{"image": "registry.example/model:1"}]},
        }
    raise AssertionError(kind)


@pytest.fixture
def notebook(control_plane: ControlPlane, profile: str) -> Iterator[k8s.ApiClient]:
    with control_plane.impersonating_api_client(notebook_user(profile)) as api_client:
        yield api_client


def kubectl_as_notebook(
    control_plane: ControlPlane, namespace: str, *args: str | Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """kubectl as the namespace's notebook identity, the way a notebook user types it."""
    return control_plane.run_kubectl(
        "-n", namespace, f"--as={notebook_user(namespace)}", *map(str, args), check=check
    )


def create(
    api: k8s.ApiClient, kind: str, namespace: str, obj: dict[str, Any], **query: str
) -> dict[str, Any]:
    return request_json(
        api, "POST", PATHS[kind].format(ns=namespace), body=obj, query=list(query.items())
    )


def denial(api: k8s.ApiClient, kind: str, namespace: str, obj: dict[str, Any]) -> str:
    with pytest.raises(ApiError) as info:
        create(api, kind, namespace, obj)
    assert info.value.status == 403, str(info.value)
    return info.value.message


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


def test_a_forged_owner_is_replaced_and_kubectl_prints_the_warning(
    control_plane, warden, profile, tmp_path
):
    manifest = tmp_path / "forged.json"
    manifest.write_text(
        json.dumps(body("Secret", "forged", annotations={KEYS.owner: "someone-else"}))
    )
    result = kubectl_as_notebook(control_plane, profile, "create", "-o", "json", "-f", manifest)
    assert (
        f'Warning: kaptain-warden replaced annotation {KEYS.owner} "someone-else" with '
        f'"{notebook_user(profile)}"'
    ) in result.stderr
    assert json.loads(result.stdout)["metadata"]["annotations"][KEYS.owner] == notebook_user(
        profile
    )


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


def test_a_patch_removing_a_system_key_leaves_it_in_place(notebook, profile):
    created = create(notebook, "Secret", profile, body("Secret", "kept"))
    path = PATHS["Secret"].format(ns=profile) + "/kept"
    patch = [{"op": "remove", "path": f"/metadata/labels/{KEYS.managed.replace('/', '~1')}"}]
    patched = request_json(
        notebook, "PATCH", path, body=patch, content_type="application/json-patch+json"
    )
    assert patched["metadata"]["labels"] == created["metadata"]["labels"]
    assert get_json(notebook, path)["metadata"]["labels"][KEYS.managed] == "true"


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
    with pytest.raises(ApiError) as info:
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
    bind_cluster_admin(kube_admin, f"knative-{profile}", "knative-serving", "controller")
    with control_plane.impersonating_api_client(KNATIVE, ["system:serviceaccounts"]) as knative:
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


# --- the metadata contract with real clients: replace, apply, export, annotate ---------------


def write(path: Path, obj: dict[str, Any]) -> Path:
    path.write_text(json.dumps(obj))
    return path


def secret_path(profile: str, name: str) -> str:
    return PATHS["Secret"].format(ns=profile) + f"/{name}"


def warden_keys(obj: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The object's warden labels and annotations."""
    meta = obj["metadata"]
    return {
        section: {k: v for k, v in (meta.get(section) or {}).items() if k.startswith(KEYS.prefix)}
        for section in ("labels", "annotations")
    }


# `{"auths":{}}`: a second valid .dockerconfigjson, so that an update changes something.
OTHER_DOCKER_CONFIG = "eyJhdXRocyI6e319"


@pytest.mark.parametrize(
    "apply",
    [
        pytest.param(("replace", "-f"), id="replace"),
        pytest.param(("apply", "-f"), id="apply"),
        pytest.param(("apply", "--server-side", "-f"), id="apply-server-side"),
    ],
)
def test_updating_with_ones_own_manifest_keeps_the_stamp(
    control_plane, warden, notebook, profile, tmp_path, apply
):
    """kubectl replace / apply / apply --server-side send the user's own manifest, which has
    no warden key: the update succeeds and every warden key stays as it was."""
    own = body("Secret", "own")
    first = "create" if apply[0] == "replace" else apply[0]
    options = apply[1:-1] if apply[0] == "apply" else ()
    kubectl_as_notebook(control_plane, profile, first, *options, "-f", write(tmp_path / "a", own))
    before = get_json(notebook, secret_path(profile, "own"))
    assert before["metadata"]["labels"][KEYS.managed] == "true"
    own["data"] = {".dockerconfigjson": OTHER_DOCKER_CONFIG}
    result = kubectl_as_notebook(control_plane, profile, *apply, write(tmp_path / "b", own))
    assert "kaptain-warden" not in result.stderr  # nothing was replaced: no warning
    after = get_json(notebook, secret_path(profile, "own"))
    assert after["data"][".dockerconfigjson"] == OTHER_DOCKER_CONFIG
    assert warden_keys(after) == warden_keys(before)


def test_kubectl_replace_of_an_inference_service_keeps_the_stamp(
    control_plane, warden, notebook, profile, tmp_path
):
    """The issue's first failure: redeploying a model with the user's own manifest."""
    isvc = body("KServe", "sklearn-iris")
    isvc["spec"]["predictor"] = {"minReplicas": 1}
    kubectl_as_notebook(control_plane, profile, "create", "-f", write(tmp_path / "a", isvc))
    path = PATHS["KServe"].format(ns=profile) + "/sklearn-iris"
    before = get_json(notebook, path)
    isvc["spec"]["predictor"] = {"minReplicas": 2}
    kubectl_as_notebook(control_plane, profile, "replace", "-f", write(tmp_path / "b", isvc))
    after = get_json(notebook, path)
    assert after["spec"]["predictor"]["minReplicas"] == 2
    assert warden_keys(after) == warden_keys(before)
    assert after["metadata"]["labels"][KEYS.rule] == "inference-services"


def test_export_edit_create_gets_a_fresh_created_at(
    control_plane, warden, notebook, profile, tmp_path
):
    kubectl_as_notebook(
        control_plane, profile, "create", "-f", write(tmp_path / "a", body("Secret", "again"))
    )
    exported = yaml.safe_load(
        kubectl_as_notebook(control_plane, profile, "get", "secret", "again", "-o", "yaml").stdout
    )
    old_created = exported["metadata"]["annotations"][KEYS.created_at]
    # A later day in a user's life, shortened to the moment the exported created-at can no
    # longer be this request's own (REINVOCATION_WINDOW).
    later = parse_time(old_created) + REINVOCATION_WINDOW
    eventually(lambda: datetime.now(UTC) > later, "the reinvocation window to pass", 15)
    kubectl_as_notebook(control_plane, profile, "delete", "secret", "again")
    del exported["metadata"]["resourceVersion"]  # kubectl create refuses it otherwise
    exported["data"] = {".dockerconfigjson": OTHER_DOCKER_CONFIG}
    edited = tmp_path / "again.yaml"
    edited.write_text(yaml.safe_dump(exported))
    result = kubectl_as_notebook(control_plane, profile, "create", "-o", "json", "-f", edited)
    created = json.loads(result.stdout)
    annotations = created["metadata"]["annotations"]
    fresh = parse_time(annotations[KEYS.created_at])
    assert fresh > parse_time(old_created)
    assert abs(fresh - parse_time(created["metadata"]["creationTimestamp"])) <= timedelta(seconds=2)
    assert annotations[KEYS.expires_at] == format_time(fresh + timedelta(days=1))
    assert f'replaced annotation {KEYS.created_at} "{old_created}"' in result.stderr


def test_a_ttl_change_by_annotation_recomputes_the_expiry_and_over_limit_is_denied(
    control_plane, warden, notebook, profile
):
    created = create(notebook, "Secret", profile, body("Secret", "extended"))
    created_at = parse_time(created["metadata"]["annotations"][KEYS.created_at])

    def annotate(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return kubectl_as_notebook(
            control_plane,
            profile,
            "annotate",
            "--overwrite",
            "secret",
            "extended",
            *args,
            check=check,
        )

    annotate(f"{KEYS.ttl}=3d")
    extended = get_json(notebook, secret_path(profile, "extended"))["metadata"]["annotations"]
    assert extended[KEYS.ttl] == "3d"
    assert parse_time(extended[KEYS.expires_at]) == created_at + timedelta(days=3)
    refused = annotate(f"{KEYS.ttl}=45d", check=False)
    assert refused.returncode != 0
    assert (
        f'denied the request: annotation {KEYS.ttl}: "45d" is above the maximum of 30d that '
        'rule "credentials-secrets" allows'
    ) in refused.stderr
    # Removing a user key keeps it (absent means unchanged); a system key cannot be relabelled.
    annotate(f"{KEYS.ttl}-")
    kept = kubectl_as_notebook(
        control_plane,
        profile,
        "label",
        "--overwrite",
        "secret",
        "extended",
        f"{KEYS.owner}=mallory",
    )
    assert f'kept label {KEYS.owner} "{owner_label_value(notebook_user(profile))}"' in kept.stderr
    final = get_json(notebook, secret_path(profile, "extended"))
    assert final["metadata"]["annotations"] == {**extended}
    assert final["metadata"]["labels"] == created["metadata"]["labels"]


def test_an_unreadable_parent_never_lends_an_owner(notebook, profile):
    """A Job naming a parent the warden does not read (a ConfigMap) and claiming another
    owner is stored with the requester as its owner."""
    configmap = request_json(
        notebook,
        "POST",
        f"/api/v1/namespaces/{profile}/configmaps",
        body={"metadata": {"name": "not-a-parent"}},
    )
    job = body("Job", "borrowed", annotations={KEYS.owner: "system:admin"})
    job["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "not-a-parent",
            "uid": configmap["metadata"]["uid"],
        }
    ]
    created = create(notebook, "Job", profile, job)
    assert created["metadata"]["annotations"][KEYS.owner] == notebook_user(profile)
    assert created["metadata"]["labels"][KEYS.owner] == owner_label_value(notebook_user(profile))


def test_what_no_rule_governs_is_stored_without_warden_keys(
    control_plane, warden, profile, tmp_path
):
    """A Secret type no rule names, carrying managed, rule, another owner and a past expiry."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "example.com/custom",
        "metadata": {
            "name": "custom",
            "labels": {KEYS.managed: "true", KEYS.rule: "credentials-secrets", "app": "x"},
            "annotations": {
                KEYS.owner: "system:admin",
                KEYS.expires_at: "2020-01-01T00:00:00Z",
            },
        },
    }
    result = kubectl_as_notebook(
        control_plane, profile, "create", "-o", "json", "-f", write(tmp_path / "s", secret)
    )
    stored = json.loads(result.stdout)["metadata"]
    assert stored["labels"] == {"app": "x"}
    assert not stored.get("annotations")
    assert "no kaptain-warden rule governs this Secret" in result.stderr


def bind_cluster_admin(kube_admin: k8s.ApiClient, name: str, namespace: str, account: str) -> None:
    """A controller's ServiceAccount with cluster-wide rights on its kinds (cluster-admin here)."""
    request_json(
        kube_admin,
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        body={
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    )


def test_kserve_creates_and_reconciles_the_predictors_knative_service(
    control_plane, kube_admin, notebook, profile
):
    """Replays the requests of the KServe v0.20.0 manager for a serverless predictor.

    kserve v0.20.0, pkg/controller/v1beta1/inferenceservice/components/predictor.go
    (buildObjectMeta): the component's labels are the InferenceService's labels, plus
    `serving.kserve.io/inferenceservice` and `component`; its annotations are the
    InferenceService's. reconcilers/knative/ksvc_reconciler.go (createKnativeService): the
    Knative Service gets those labels in `metadata.labels` and on the revision template, the
    annotations only on the revision template (`metadata.annotations` holds just KServe's
    rollout keys); Reconcile() creates it, then on every later reconcile sends
    Update(desired, DryRunAll) with the existing resourceVersion and creator/updater
    annotations, and Update(existing) with the labels the dry run answered.
    """
    isvc = create(
        notebook,
        "KServe",
        profile,
        body("KServe", "mnist", labels={"team": "vision"}, annotations={KEYS.ttl: "2h"}),
    )
    assert KEYS.expires_at in isvc["metadata"]["annotations"]
    account = "kserve-controller-manager"
    bind_cluster_admin(kube_admin, f"kserve-{profile}", "kserve", account)
    component_labels = {
        **isvc["metadata"]["labels"],
        "serving.kserve.io/inferenceservice": "mnist",
        "component": "predictor",
    }
    desired = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": "mnist-predictor",
            "namespace": profile,
            "labels": component_labels,
            "annotations": {},
            "ownerReferences": [
                {
                    "apiVersion": "serving.kserve.io/v1beta1",
                    "kind": "InferenceService",
                    "name": "mnist",
                    "uid": isvc["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "template": {
                "metadata": {
                    "labels": component_labels,
                    "annotations": {
                        **isvc["metadata"]["annotations"],
                        "autoscaling.knative.dev/min-scale": "1",
                        "autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
                    },
                },
                "spec": {"containers": [{"name": "kserve-container", "image": "kserve/sklearn"}]},
            },
            "traffic": [{"latestRevision": True, "percent": 100}],
        },
    }
    user = f"system:serviceaccount:kserve:{account}"
    groups = ["system:serviceaccounts", "system:serviceaccounts:kserve"]
    path = PATHS["KnativeService"].format(ns=profile) + "/mnist-predictor"
    with control_plane.impersonating_api_client(user, groups) as kserve:
        created = create(kserve, "KnativeService", profile, copy.deepcopy(desired))
        labels, annotations = created["metadata"]["labels"], created["metadata"]["annotations"]
        assert labels[KEYS.rule] == "knative-serving"
        assert labels[KEYS.owner] == owner_label_value(notebook_user(profile))
        assert annotations[KEYS.owner] == notebook_user(profile)
        # Its own rule: no expiry inherited from the InferenceService.
        assert KEYS.ttl not in annotations and KEYS.expires_at not in annotations
        # Reconcile: the dry-run update of a desired object without warden annotations.
        desired["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
        for key in ("serving.knative.dev/creator", "serving.knative.dev/lastModifier"):
            # Go reads a missing map key as "": copied as such when Knative's webhook is absent.
            desired["metadata"]["annotations"][key] = created["metadata"]["annotations"].get(
                key, ""
            )
        dry = request_json(kserve, "PUT", path, body=desired, query=[("dryRun", "All")])
        assert warden_keys(dry) == warden_keys(created)
        existing = get_json(kserve, path)
        existing["metadata"]["labels"] = dry["metadata"]["labels"]
        existing["spec"] = dry["spec"]
        updated = request_json(kserve, "PUT", path, body=existing)
        assert warden_keys(updated) == warden_keys(created)
    # Knative then makes the Revision from the template: the InferenceService's keys arrive.
    bind_cluster_admin(kube_admin, f"knative-{profile}", "knative-serving", "controller")
    with control_plane.impersonating_api_client(KNATIVE, ["system:serviceaccounts"]) as knative:
        template = desired["spec"]["template"]["metadata"]
        revision = body(
            "Revision",
            "mnist-predictor-00001",
            labels={**template["labels"], "serving.knative.dev/configuration": "mnist-predictor"},
            annotations=template["annotations"],
        )
        made = create(knative, "Revision", profile, revision)
    annotations = made["metadata"]["annotations"]
    assert made["metadata"]["labels"][KEYS.rule] == "knative-revisions"
    assert annotations[KEYS.owner] == notebook_user(profile)
    assert KEYS.ttl not in annotations and KEYS.expires_at not in annotations


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
        with pytest.raises(ApiError) as info:
            create(notebook, "Secret", profile, body("Secret", "while-down"))
        assert "failed calling webhook" in info.value.message
        patched = status_update(kube_admin, "TFJob", profile, "running")
        assert patched["status"]["conditions"][0]["type"] == "Succeeded"

        warden.register(failure_policy="Ignore")
        deadline_ok = False
        for _ in range(100):
            try:
                created = create(
                    notebook, "Secret", profile, body("Secret", f"ignored-{uuid.uuid4().hex[:6]}")
                )
            except ApiError:
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
    with control_plane.api_client() as admin, pytest.raises(ApiError) as info:
        get_json(
            admin, "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/short-lived"
        )
    assert info.value.status == 404
