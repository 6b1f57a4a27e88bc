"""Kubeflow Profiles for tests: the CRD's identity and what the profile controller writes.

Kubeflow's profile-controller (kubeflow/kubeflow `components/profile-controller`, API
`kubeflow.org/v1`) serves `profiles`, cluster-scoped, one per namespace of the same name;
`spec.owner` is an RBAC subject (`{kind: User, name: alice@example.com}`), and the controller
writes that owner into the namespace's `owner` annotation. Only those facts are reproduced
here: the schema is left open, because the warden reads `spec.owner.name` and nothing else.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from kubernetes import client as k8s

from kaptain_warden.kube.client import request_json
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.policies.metadata import (
    KUBEFLOW_NAMESPACE_OWNER,
    KUBEFLOW_PROFILE_GROUP,
    KUBEFLOW_PROFILE_RESOURCE,
    KUBEFLOW_PROFILE_VERSION,
)
from kaptain_warden.testing.crds import install_crds
from kaptain_warden.testing.stack import create_profile_namespace

__all__ = ["PROFILE_CRD", "create_owned_profile", "install_profile_crd"]

PROFILE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{KUBEFLOW_PROFILE_RESOURCE}.{KUBEFLOW_PROFILE_GROUP}"},
    "spec": {
        "group": KUBEFLOW_PROFILE_GROUP,
        "scope": "Cluster",
        "names": {
            "kind": "Profile",
            "listKind": "ProfileList",
            "plural": KUBEFLOW_PROFILE_RESOURCE,
            "singular": "profile",
        },
        "versions": [
            {
                "name": KUBEFLOW_PROFILE_VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def install_profile_crd(api_client: k8s.ApiClient) -> None:
    """Create the Profile CRD (if absent) and wait until it is served."""
    with tempfile.TemporaryDirectory(prefix="profile-crd-") as directory:
        Path(directory, "kubeflow.org_profiles.yaml").write_text(yaml.safe_dump(PROFILE_CRD))
        install_crds(api_client, crd_dir=Path(directory))


def create_owned_profile(api_client: k8s.ApiClient, namespace: str, owner: str) -> None:
    """A Profile named `namespace` owned by `owner`, and its namespace as the profile
    controller leaves it (the `owner` annotation; the notebook's `default-editor` may create
    what the SDK creates)."""
    path = f"/apis/{KUBEFLOW_PROFILE_GROUP}/{KUBEFLOW_PROFILE_VERSION}/{KUBEFLOW_PROFILE_RESOURCE}"
    body = {
        "apiVersion": f"{KUBEFLOW_PROFILE_GROUP}/{KUBEFLOW_PROFILE_VERSION}",
        "kind": "Profile",
        "metadata": {"name": namespace},
        "spec": {"owner": {"kind": "User", "name": owner}},
    }
    try:
        request_json(api_client, "POST", path, body=body)
    except ApiError as exc:
        if exc.status != 409:
            raise
    create_profile_namespace(api_client, namespace)
    request_json(
        api_client,
        "PATCH",
        f"/api/v1/namespaces/{namespace}",
        body={"metadata": {"annotations": {KUBEFLOW_NAMESPACE_OWNER: owner}}},
        content_type="application/merge-patch+json",
    )
