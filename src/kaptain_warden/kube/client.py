"""Building a Kubernetes API client: a kubeconfig file, else in-cluster, else ~/.kube/config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

# Accept header for metadata-only reads and lists: the API server answers with
# PartialObjectMetadata(List), so Secret data and large specs never cross the wire.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
METADATA_LIST_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


class KubeConfigError(RuntimeError):
    """No usable cluster credentials; the message says what was tried."""


def load_api_client(kubeconfig: str | None = None) -> k8s.ApiClient:
    """An ApiClient from `kubeconfig`, else the in-cluster ServiceAccount, else ~/.kube/config."""
    configuration = k8s.Configuration()
    tried = []
    if kubeconfig:
        if not Path(kubeconfig).is_file():
            raise KubeConfigError(f"kubeconfig {kubeconfig} does not exist")
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return k8s.ApiClient(configuration)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
            return k8s.ApiClient(configuration)
        except k8s_config.ConfigException as exc:
            tried.append(f"in-cluster: {exc}")
    else:
        tried.append("in-cluster: KUBERNETES_SERVICE_HOST is not set")
    default = Path(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]).expanduser()
    if default.is_file():
        k8s_config.load_kube_config(config_file=str(default), client_configuration=configuration)
        return k8s.ApiClient(configuration)
    tried.append(f"{default}: no such file")
    raise KubeConfigError(
        "no cluster credentials found (" + "; ".join(tried) + "); pass --kubeconfig"
    )


def resource_path(
    *,
    group: str,
    version: str,
    resource: str,
    namespace: str | None = None,
    name: str | None = None,
) -> str:
    """The REST path of a collection or object: `/api/v1/...` or `/apis/<group>/<version>/...`."""
    path = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{resource}"
    if name:
        path += f"/{name}"
    return path


def request_json(
    api_client: k8s.ApiClient,
    method: str,
    path: str,
    *,
    query: list[tuple[str, Any]] | None = None,
    body: Any = None,
    accept: str = "application/json",
    content_type: str = "application/json",
    timeout: float | None = None,
) -> Any:
    """Send one request and decode the JSON answer ourselves.

    Building the client's model objects costs more than the request for large lists; a plain
    dict is all the callers need. Non-2xx answers raise the client's `ApiException` subclasses
    (404 NotFoundException, 409 ConflictException, 5xx ServiceException, ...).
    """
    headers = {"Accept": accept}
    if body is not None:
        headers["Content-Type"] = content_type
    serialized = api_client.param_serialize(
        method,
        path,
        query_params=query or [],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api_client.call_api(*serialized, _request_timeout=timeout)
    data = response.read()
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(
            http_resp=response, body=data.decode("utf-8", "replace") if data else None, data=None
        )
    return orjson.loads(data) if data else None


def get_json(
    api_client: k8s.ApiClient,
    path: str,
    *,
    query: list[tuple[str, Any]] | None = None,
    accept: str = "application/json",
    timeout: float | None = None,
) -> Any:
    """GET `path` as JSON (see `request_json`)."""
    return request_json(api_client, "GET", path, query=query, accept=accept, timeout=timeout)
