"""Tier 3: kubectl, run as a notebook with its ServiceAccount token, the ways people use it on
governed objects: apply (client- and server-side), replace with one's own manifest, edit, and
an exported manifest edited and created again. Every call succeeds; the warden's keys end as
the contract says.
"""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from kaptain_warden.policies.owner import owner_label_value
from kaptain_warden.policies.timestamps import format_time, parse_time
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.notebook import Notebook
from notebook_kit import (
    KEYS,
    actions,
    assert_stamped,
    expected_expiry,
    read,
    sweep_preview,
    warden_metadata,
)

pytestmark = pytest.mark.e2e


def secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "labels": {"app": "mnist"}},
        "stringData": data,
    }


def tfjob(workers: int) -> dict[str, Any]:
    container = {"name": "tensorflow", "image": "docker.io/kubeflow/tf-mnist-with-summaries:1"}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "mnist"},
        "spec": {
            "tfReplicaSpecs": {
                "Worker": {
                    "replicas": workers,
                    "restartPolicy": "OnFailure",
                    "template": {"spec": {"containers": [container]}},
                }
            }
        },
    }


def isvc(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "sklearn-iris"},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": f"gs://kfserving-examples/models/sklearn/1.0/{version}",
                }
            }
        },
    }


def manifest(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


def test_client_side_apply_twice(
    token_notebook: Notebook, kube_admin: k8s.ApiClient, control_plane: ControlPlane
) -> None:
    path = f"/api/v1/namespaces/{token_notebook.namespace}/secrets/registry"
    started = datetime.now(UTC)
    token_notebook.kubectl("apply", "-f", "-", input=manifest(secret("registry", user="a")))
    stamps = assert_stamped(
        read(kube_admin, path),
        rule="credentials-secrets",
        owner=token_notebook.user,
        not_before=started,
    )
    token_notebook.kubectl("apply", "-f", "-", input=manifest(secret("registry", user="b")))
    applied = read(kube_admin, path)
    assert applied["data"]["user"] == "Yg=="  # base64 of "b"
    assert warden_metadata(applied) == stamps


def test_server_side_apply_twice(
    token_notebook: Notebook, kube_admin: k8s.ApiClient, control_plane: ControlPlane
) -> None:
    # The applied configuration names no warden key and no TTL field; the webhook's additions
    # belong to no field manager, so re-applying changes the spec and nothing of the stamp.
    path = f"/apis/kubeflow.org/v1/namespaces/{token_notebook.namespace}/tfjobs/mnist"
    started = datetime.now(UTC)
    token_notebook.kubectl("apply", "--server-side", "-f", "-", input=manifest(tfjob(1)))
    first = read(kube_admin, path)
    stamps = assert_stamped(
        first, rule="training-jobs", owner=token_notebook.user, not_before=started
    )
    token_notebook.kubectl("apply", "--server-side", "-f", "-", input=manifest(tfjob(2)))
    second = read(kube_admin, path)
    assert second["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2
    assert warden_metadata(second) == stamps
    assert second["spec"]["runPolicy"]["ttlSecondsAfterFinished"] == 7 * 24 * 3600


def test_replace_with_ones_own_manifest_then_edit(
    token_notebook: Notebook, kube_admin: k8s.ApiClient, control_plane: ControlPlane, tmp_path
) -> None:
    namespace = token_notebook.namespace
    path = f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices/sklearn-iris"
    started = datetime.now(UTC)
    token_notebook.kubectl("create", "-f", "-", input=manifest(isvc("v1")))
    stamps = assert_stamped(
        read(kube_admin, path),
        rule="inference-services",
        owner=token_notebook.user,
        not_before=started,
    )

    # `kubectl replace -f isvc.yaml`: the file the user keeps, which has no warden key.
    token_notebook.kubectl("replace", "-f", "-", input=manifest(isvc("v2")))
    replaced = read(kube_admin, path)
    assert replaced["spec"]["predictor"]["model"]["storageUri"].endswith("/v2")
    assert warden_metadata(replaced) == stamps

    # The edit round trip done by hand: get -o yaml, change, replace (resourceVersion and
    # every key the server wrote included).
    exported = yaml.safe_load(
        token_notebook.kubectl("get", "isvc", "sklearn-iris", "-o", "yaml").stdout
    )
    model = exported["spec"]["predictor"]["model"]
    model["storageUri"] = model["storageUri"].replace("/v2", "/v3")
    token_notebook.kubectl("replace", "-f", "-", input=manifest(exported))
    # And `kubectl edit` itself, with an editor that changes the file in place.
    editor = f"sed -i {shlex.quote('s#/v3#/v4#')}"
    result = token_notebook.kubectl("edit", "isvc", "sklearn-iris", env={"KUBE_EDITOR": editor})
    assert "edited" in result.stdout, result.stdout + result.stderr
    edited = read(kube_admin, path)
    assert edited["spec"]["predictor"]["model"]["storageUri"].endswith("/v4")
    assert warden_metadata(edited) == stamps


def test_an_exported_manifest_created_again_is_stamped_afresh(
    token_notebook: Notebook, kube_admin: k8s.ApiClient, control_plane: ControlPlane
) -> None:
    namespace = token_notebook.namespace
    token_notebook.kubectl("create", "-f", "-", input=manifest(secret("s3-creds", key="k")))
    exported = yaml.safe_load(
        token_notebook.kubectl("get", "secret", "s3-creds", "-o", "yaml").stdout
    )
    # The export is two days old (as if saved then), names another owner (a colleague's
    # object), and is edited into a new object: a new name, without the server's fields.
    annotations = exported["metadata"]["annotations"]
    two_days_ago = parse_time(annotations[KEYS.created_at]) - timedelta(days=2)
    annotations[KEYS.created_at] = format_time(two_days_ago)
    annotations[KEYS.expires_at] = format_time(two_days_ago + timedelta(days=1))
    colleague = "system:serviceaccount:team-b:default-editor"
    annotations[KEYS.owner] = colleague
    exported["metadata"]["labels"][KEYS.owner] = owner_label_value(colleague)
    for field in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
        exported["metadata"].pop(field, None)
    exported["metadata"]["name"] = "s3-creds-copy"
    started = datetime.now(UTC)
    result = token_notebook.kubectl("create", "-f", "-", input=manifest(exported))
    # kubectl prints the admission warnings: the user learns their values were replaced.
    assert "Warning:" in result.stderr and KEYS.prefix in result.stderr, result.stderr

    copy = read(kube_admin, f"/api/v1/namespaces/{namespace}/secrets/s3-creds-copy")
    assert_stamped(copy, rule="credentials-secrets", owner=token_notebook.user, not_before=started)
    assert copy["metadata"]["annotations"][KEYS.expires_at] == expected_expiry(
        copy, timedelta(days=1)
    )

    report = sweep_preview(control_plane, namespace)
    assert actions(report) == {"Secret/s3-creds": "keep", "Secret/s3-creds-copy": "keep"}
    assert report["Secret/s3-creds-copy"]["owner"] == token_notebook.user
    later = sweep_preview(control_plane, namespace, "+25h")
    assert actions(later) == {"Secret/s3-creds": "delete", "Secret/s3-creds-copy": "delete"}


def test_the_notebook_authenticates_with_its_bound_service_account_token(
    token_notebook: Notebook,
) -> None:
    # What the API server (and so the warden) sees: the ServiceAccount, its groups, and the
    # notebook Pod the token is bound to; no impersonation, no client certificate.
    review = json.loads(token_notebook.kubectl("auth", "whoami", "-o", "json").stdout)
    user = review["status"]["userInfo"]
    assert user["username"] == token_notebook.user
    assert f"system:serviceaccounts:{token_notebook.namespace}" in user["groups"]
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["notebook-0"]
