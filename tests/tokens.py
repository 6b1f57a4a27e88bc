"""Real ServiceAccount credentials for tier-3 tests: a TokenRequest, written into a kubeconfig."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client as k8s

from kaptain_warden.kube.client import request_json
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.testing.controlplane import ControlPlane


def service_account_kubeconfig(
    plane: ControlPlane, admin: k8s.ApiClient, *, namespace: str, name: str, path: Path
) -> Path:
    """A kubeconfig holding a bound token of ServiceAccount `namespace/name` (created if absent).

    The API server authenticates the token itself, as it does a notebook Pod's projected
    token: the identity and groups are the ServiceAccount's, nothing is impersonated.
    """
    try:
        request_json(
            admin,
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            body={"metadata": {"name": name}},
        )
    except ApiError as exc:
        if exc.status != 409:
            raise
    review = request_json(
        admin,
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    token = review["status"]["token"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "test",
                "cluster": {"server": plane.url, "certificate-authority": str(plane.ca_cert_path)},
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [
            {"name": "test", "context": {"cluster": "test", "user": name, "namespace": namespace}}
        ],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(config))
    return path
