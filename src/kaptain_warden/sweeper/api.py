"""The sweeper's one door to the API server: raw JSON requests, counted, errors classified."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kaptain_warden.kube.client import METADATA_ONLY, request_json, resource_path
from kaptain_warden.policies.kinds import KnownKind

__all__ = ["API_ERRORS", "KubeApi", "describe_error", "error_status", "patch_listed"]

#: What a request can raise: HTTP errors, connection errors, undecodable bodies (orjson's
#: JSONDecodeError is a ValueError).
API_ERRORS: tuple[type[Exception], ...] = (
    ApiException,
    urllib3.exceptions.HTTPError,
    OSError,
    ValueError,
)


class KubeApi:
    """Sends JSON requests through one ApiClient and counts them (the benchmark reports it).

    Thread-safe: deletions run on a small thread pool.
    """

    def __init__(self, api_client: k8s.ApiClient, *, timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.timeout = timeout
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        """The API server's URL."""
        return str(self.api_client.configuration.host)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        accept: str = "application/json",
        content_type: str = "application/json",
    ) -> Any:
        """One request; the decoded JSON answer. Raises one of `API_ERRORS`."""
        with self._lock:
            self._counts[method] += 1
        return request_json(
            self.api_client,
            method,
            path,
            query=query,
            body=body,
            accept=accept,
            content_type=content_type,
            timeout=self.timeout,
        )

    def get(
        self,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        accept: str = "application/json",
    ) -> Any:
        """GET `path`."""
        return self.request("GET", path, query=query, accept=accept)

    @property
    def counts(self) -> dict[str, int]:
        """Requests sent so far, by HTTP method."""
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        """Requests sent so far."""
        with self._lock:
            return sum(self._counts.values())


def patch_listed(
    api: KubeApi,
    kind: KnownKind,
    *,
    namespace: str,
    name: str,
    resource_version: object,
    labels: Mapping[str, str | None] | None = None,
    annotations: Mapping[str, str | None] | None = None,
) -> bool:
    """Merge-patch labels and annotations onto an object as it was listed; whether it wrote.

    The listed resourceVersion is a precondition (optimistic concurrency): of two replicas or
    passes that saw the same object, one write wins. False when the object changed or went
    since it was listed (409, 404): the next pass looks again. The answer is asked for as
    metadata only, so a patched Secret's data never reaches the sweeper. Other API errors
    raise.
    """
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if labels is not None:
        metadata["labels"] = labels
    if annotations is not None:
        metadata["annotations"] = annotations
    path = resource_path(
        group=kind.group,
        version=kind.version,
        resource=kind.resource,
        namespace=namespace,
        name=name,
    )
    try:
        api.request(
            "PATCH",
            path,
            body={"metadata": metadata},
            content_type="application/merge-patch+json",
            accept=METADATA_ONLY,
        )
    except ApiException as exc:
        if error_status(exc) in (404, 409):
            return False
        raise
    return True


def error_status(exc: BaseException) -> int | None:
    """The HTTP status of an API error, or None for connection and decoding errors."""
    if isinstance(exc, ApiException) and exc.status:
        return int(exc.status)
    return None


def describe_error(exc: BaseException) -> str:
    """A one-line description: `HTTP 503 Service Unavailable: <message>` or the error type."""
    if isinstance(exc, ApiException) and exc.status:
        message = ""
        body = exc.body
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        if isinstance(body, str) and body.startswith("{"):
            try:
                message = str(orjson.loads(body).get("message", ""))
            except ValueError:
                message = ""
        text = f"HTTP {exc.status} {exc.reason or ''}".rstrip()
        return f"{text}: {message}" if message else text
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
