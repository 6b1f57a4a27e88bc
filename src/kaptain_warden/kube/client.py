"""Building a Kubernetes API client: a kubeconfig file, else in-cluster, else ~/.kube/config."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any, Protocol

import orjson
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from kaptain_warden.kube.errors import CLIENT_ERRORS, ApiError

# Accept header for metadata-only reads and lists: the API server answers with
# PartialObjectMetadata(List), so Secret data and large specs never cross the wire.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
METADATA_LIST_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"

# How much of a streamed answer is read at once, and the most an error answer's body is read.
_STREAM_CHUNK = 1 << 16
_ERROR_BODY = 1 << 16


class KubeConfigError(RuntimeError):
    """No usable cluster credentials; the message says what was tried."""


# Certificates and keys a kubeconfig embeds (`<field>-data`): the Kubernetes client would write
# each to a file in the temporary directory that only an orderly interpreter exit removes, so a
# killed process (SIGKILL, or SIGTERM without a handler) leaves its private key behind. They are
# handed to the client as anonymous in-memory files instead (Linux memfd, named by
# /proc/self/fd/N), which the kernel frees with the process, however it ends.
_EMBEDDED_CREDENTIALS = {
    "clusters": ("cluster", ("certificate-authority",)),
    "users": ("user", ("client-certificate", "client-key")),
}
_memory_files: dict[bytes, str] = {}  # content digest -> path; open for the process's lifetime


def _memory_file(content: bytes) -> str:
    digest = hashlib.sha256(content).digest()
    if digest not in _memory_files:
        fd = os.memfd_create("kaptain-warden-kubeconfig", 0)  # inherited by forked workers
        os.write(fd, content)
        _memory_files[digest] = f"/proc/self/fd/{fd}"
    return _memory_files[digest]


def _load_kubeconfig(path: str, configuration: k8s.Configuration) -> None:
    if not hasattr(os, "memfd_create"):  # not Linux: the client's own temporary files
        k8s_config.load_kube_config(config_file=path, client_configuration=configuration)
        return
    with open(path, encoding="utf-8") as stream:
        document = yaml.safe_load(stream) or {}
    for section, (key, fields) in _EMBEDDED_CREDENTIALS.items():
        for entry in document.get(section) or []:
            body = entry.get(key) if isinstance(entry, dict) else None
            if not isinstance(body, dict):
                continue
            for field in fields:
                data = body.pop(f"{field}-data", None)
                if data:
                    body[field] = _memory_file(base64.standard_b64decode(data))
    k8s_config.kube_config.KubeConfigLoader(
        config_dict=document, config_base_path=str(Path(path).resolve().parent)
    ).load_and_set(configuration)


def load_api_client(kubeconfig: str | None = None) -> k8s.ApiClient:
    """An ApiClient from `kubeconfig`, else the in-cluster ServiceAccount, else ~/.kube/config."""
    configuration = k8s.Configuration()
    tried = []
    if kubeconfig:
        if not Path(kubeconfig).is_file():
            raise KubeConfigError(f"kubeconfig {kubeconfig} does not exist")
        _load_kubeconfig(kubeconfig, configuration)
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
        _load_kubeconfig(str(default), configuration)
        return k8s.ApiClient(configuration)
    tried.append(f"{default}: no such file")
    raise KubeConfigError(
        "no cluster credentials found (" + "; ".join(tried) + "); pass --kubeconfig"
    )


_IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def current_namespace(kubeconfig: str | None = None) -> str:
    """The namespace the credentials act in, as kubectl picks it: the kubeconfig context's,
    else the Pod's own (in-cluster, e.g. a notebook), else `default`."""
    try:
        _, context = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
        namespace = (context or {}).get("context", {}).get("namespace")
        if isinstance(namespace, str) and namespace:
            return namespace
    except (k8s_config.ConfigException, OSError, TypeError):
        pass  # no kubeconfig (in a Pod): the ServiceAccount's namespace below
    try:
        return _IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


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


class Served(Protocol):
    """What names a kind's REST collection: a registry entry, a list request."""

    @property
    def group(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def resource(self) -> str: ...


def kind_path(kind: Served, namespace: str | None = None, name: str | None = None) -> str:
    """`resource_path` of `kind`'s collection, or of its object `name`."""
    return resource_path(
        group=kind.group,
        version=kind.version,
        resource=kind.resource,
        namespace=namespace,
        name=name,
    )


def _send(
    api_client: k8s.ApiClient,
    method: str,
    path: str,
    *,
    query: list[tuple[str, Any]] | None,
    headers: dict[str, str],
    body: Any = None,
    timeout: float | None,
) -> Any:
    """Send one request with the client's credentials; its answer, body not read yet (the
    client reads none: it asks urllib3 not to preload)."""
    serialized = api_client.param_serialize(
        method,
        path,
        query_params=query or [],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    return api_client.call_api(*serialized, _request_timeout=timeout)


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
    dict is all the callers need. Every failure raises `ApiError`: a non-2xx answer with its
    status (404, 409, 5xx, ...), no answer or an undecodable one with none.
    """
    headers = {"Accept": accept}
    if body is not None:
        headers["Content-Type"] = content_type
    try:
        response = _send(
            api_client, method, path, query=query, headers=headers, body=body, timeout=timeout
        )
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiError.from_answer(response.status, response.reason, data)
        return orjson.loads(data) if data else None
    except CLIENT_ERRORS as exc:
        raise ApiError.from_exception(exc) from exc


def stream_json(
    api_client: k8s.ApiClient,
    path: str,
    *,
    query: list[tuple[str, Any]],
    accept: str = "application/json",
    timeout: float | None = None,
) -> Generator[Any, None, None]:
    """GET `path` and decode its answer as it arrives: one JSON document per line, as a watch
    sends its events. Only the documents not yet handed out are held, so a long answer is
    never in memory whole.

    The connection is closed, never returned to the pool, when the caller stops iterating (or
    closes the iterator): a watch does not end by itself. `timeout` bounds the connection and
    each read, not the whole answer. Every failure raises `ApiError`, as `request_json` does.
    """
    try:
        response = _send(
            api_client, "GET", path, query=query, headers={"Accept": accept}, timeout=timeout
        )
    except CLIENT_ERRORS as exc:
        raise ApiError.from_exception(exc) from exc
    raw = response.response
    try:
        if not 200 <= response.status <= 299:
            raise ApiError.from_answer(response.status, response.reason, raw.read(_ERROR_BODY))
        pending = b""
        for chunk in raw.stream(_STREAM_CHUNK):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                if line:
                    yield orjson.loads(line)
        if pending.strip():
            yield orjson.loads(pending)
    except CLIENT_ERRORS as exc:
        raise ApiError.from_exception(exc) from exc
    finally:
        raw.close()
        raw.release_conn()


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
