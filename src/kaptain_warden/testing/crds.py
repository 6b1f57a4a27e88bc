"""CustomResourceDefinitions for the harness: read from YAML, installed, and waited for until
the API server serves them (established, discovered, storage ready)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kaptain_warden.testing.errors import ControlPlaneError
from kaptain_warden.testing.upstream import default_crd_files, find_upstream, load_yaml_documents

__all__ = ["crd_documents", "install_crds"]

_POLL_INTERVAL: Final = 0.05


def crd_documents(source: Path | Iterable[Path] | None = None) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in `source`: a directory (its `*.yaml` files), YAML files,
    or by default the test CRDs (`default_crd_files()`: the upstream ones and the KFServing one)."""
    if source is None:
        paths = default_crd_files(find_upstream())
    elif isinstance(source, Path):
        paths = sorted(source.glob("*.yaml")) if source.is_dir() else [source]
    else:
        paths = list(source)
    documents: list[dict[str, Any]] = []
    for path in paths:
        try:
            loaded = list(load_yaml_documents(path))
        except yaml.YAMLError as error:
            raise ControlPlaneError(f"{path} is not valid YAML: {error}") from error
        for document in loaded:
            if not document:
                continue
            if document.get("kind") != "CustomResourceDefinition":
                raise ControlPlaneError(f"{path} holds a {document.get('kind')}, not a CRD")
            documents.append(document)
    if not documents:
        raise ControlPlaneError(f"no CRDs in {source}")
    return documents


def _read_crd(api: k8s.CustomObjectsApi, name: str) -> dict[str, Any]:
    crd: dict[str, Any] = api.get_cluster_custom_object(
        "apiextensions.k8s.io", "v1", "customresourcedefinitions", name
    )  # type: ignore[assignment]  # the generated client annotates it as `object`
    return crd


def _condition(crd: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in crd.get("status", {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition  # type: ignore[no-any-return]
    return None


def install_crds(
    api_client: k8s.ApiClient,
    *,
    crd_dir: Path | Iterable[Path] | None = None,
    timeout: float = 60.0,
) -> list[str]:
    """Create (or replace) every CRD of `crd_dir` (see `crd_documents`) and wait until each is
    served.

    "Served" means the `Established` condition is True and API discovery lists the plural for
    every served version, so clients that discover resources (kubectl, the dynamic client, the
    garbage collector) can use it right away. Returns the CRD names.
    """
    documents = crd_documents(crd_dir)
    api = k8s.CustomObjectsApi(api_client)
    crd_group, crd_version, crd_plural = "apiextensions.k8s.io", "v1", "customresourcedefinitions"
    names: list[str] = []
    for document in documents:
        name = document["metadata"]["name"]
        names.append(name)
        try:
            api.create_cluster_custom_object(crd_group, crd_version, crd_plural, document)
        except ApiException as error:
            if error.status != 409:
                raise ControlPlaneError(
                    f"creating CRD {name} failed: {error.status} {error.reason}: {error.body}"
                ) from error
            existing = _read_crd(api, name)
            replacement = json.loads(json.dumps(document))
            replacement["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
            api.replace_cluster_custom_object(crd_group, crd_version, crd_plural, name, replacement)

    deadline = time.monotonic() + timeout
    for document in documents:
        name = document["metadata"]["name"]
        group = document["spec"]["group"]
        plural = document["spec"]["names"]["plural"]
        versions = [v["name"] for v in document["spec"]["versions"] if v.get("served", True)]
        last_state = "not yet read"
        while True:
            crd = _read_crd(api, name)
            names_accepted = _condition(crd, "NamesAccepted")
            if names_accepted is not None and names_accepted.get("status") == "False":
                raise ControlPlaneError(
                    f"CRD {name}: names not accepted: {names_accepted.get('message')}"
                )
            established = _condition(crd, "Established")
            if established is not None and established.get("status") == "True":
                undiscovered = [v for v in versions if not _discovered(api, group, v, plural)]
                unready = [
                    v
                    for v in versions
                    if v not in undiscovered and not _storage_ready(api, group, v, plural)
                ]
                if not undiscovered and not unready:
                    break
                last_state = (
                    f"established, not yet in discovery for {', '.join(undiscovered)}"
                    if undiscovered
                    else f"storage still initializing for {', '.join(unready)}"
                )
            else:
                last_state = f"conditions {crd.get('status', {}).get('conditions')}"
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"CRD {name} was not served within {timeout:.0f}s; last state: {last_state}"
                )
            time.sleep(_POLL_INTERVAL)
    return names


def _storage_ready(api: k8s.CustomObjectsApi, group: str, version: str, plural: str) -> bool:
    """False while the API server still answers 429 "storage is (re)initializing" for it.

    A CRD is in discovery a moment before its storage serves requests; tests that create
    objects right away would otherwise see that 429 on their first write.
    """
    try:
        api.list_cluster_custom_object(group, version, plural, limit=1)
    except ApiException as error:
        if error.status in (429, 503):
            return False
        raise
    return True


def _discovered(api: k8s.CustomObjectsApi, group: str, version: str, plural: str) -> bool:
    try:
        resources = api.get_api_resources(group, version)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return any(resource.name == plural for resource in resources.resources or [])
