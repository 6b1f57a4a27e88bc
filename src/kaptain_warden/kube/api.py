"""The one door to the API server: JSON requests through one client, counted; every failure an
`ApiError` (`kube.errors`). The sweeper, `ls`/`extend` and the certificate sync use it."""

from __future__ import annotations

import threading
from collections.abc import Generator, Mapping
from typing import Any

from kubernetes import client as k8s

from kaptain_warden.kube.client import METADATA_ONLY, kind_path, request_json, stream_json
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.policies.kinds import KnownKind

__all__ = ["KubeApi", "patch_listed"]


class KubeApi:
    """Sends JSON requests through one ApiClient and counts them (the benchmark reports it).

    Thread-safe: deletions run on a small thread pool.
    """

    def __init__(self, api_client: k8s.ApiClient, *, timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.timeout = timeout
        #: Whether this API server may stream a list (a watch that begins with its objects,
        #: `kube.listing`); set False the first time it refuses one, so it is asked once.
        self.streams_lists = True
        self._sent = 0
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
        timeout: float | None = None,
    ) -> Any:
        """One request; the decoded JSON answer. Raises `ApiError`.

        `timeout` (seconds) replaces this door's own for this request.
        """
        with self._lock:
            self._sent += 1
        return request_json(
            self.api_client,
            method,
            path,
            query=query,
            body=body,
            accept=accept,
            content_type=content_type,
            timeout=self.timeout if timeout is None else timeout,
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

    def stream(
        self,
        path: str,
        *,
        query: list[tuple[str, Any]],
        accept: str = "application/json",
    ) -> Generator[Any, None, None]:
        """GET `path` and decode its answer line by line as it arrives (a watch's events);
        closing the iterator closes the connection. Raises `ApiError`."""
        with self._lock:
            self._sent += 1
        return stream_json(self.api_client, path, query=query, accept=accept, timeout=self.timeout)

    @property
    def total(self) -> int:
        """Requests sent so far."""
        with self._lock:
            return self._sent


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
    path = kind_path(kind, namespace=namespace, name=name)
    try:
        api.request(
            "PATCH",
            path,
            body={"metadata": metadata},
            content_type="application/merge-patch+json",
            accept=METADATA_ONLY,
        )
    except ApiError as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True
