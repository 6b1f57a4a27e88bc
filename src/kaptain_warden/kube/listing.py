"""The sweeper's lister: label-selected lists, metadata-only unless the decision must read
status; custom resources streamed from the API server's cache, built-in kinds in pages.

Why two ways: the API server serves only the first page of a paginated list from its watch
cache, and reads every further page (`continue`) from etcd. A built-in kind is stored as
protobuf and cheap to read there; a custom resource is stored as JSON, and each object read
from etcd is decoded, pruned and defaulted against its CRD's schema again, which costs the API
server several times what the same objects cost from its cache. A watch that begins with the
collection's objects (`sendInitialEvents=true`, the API server's streaming list) is served
from the cache, one object at a time, consistent as a list is, in one request; the sweeper
handles each object as it arrives, while the API server sends the next. Built-in kinds cost
the API server less in pages than as watch events, so they stay paginated. An API server that
refuses streaming lists (Kubernetes 1.30-1.31 and 1.33 have them off by default) is asked
once and then listed in pages.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import METADATA_LIST_ONLY, METADATA_ONLY, kind_path
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.policies.kinds import ApiVersioned, KnownKind

__all__ = ["KindNotServedError", "ListRequest", "list_all", "list_each"]

logger = logging.getLogger(__name__)

# A `continue` token expires with the etcd compaction window (about five minutes); the API
# server then answers 410 Gone and the list must start over (API concepts, "Retrieving large
# results sets in chunks"). Three fresh starts in a row mean something else is wrong.
_MAX_RESTARTS = 3

# What the API server sends when a streaming list has handed out every object it began with.
_INITIAL_EVENTS_END = "k8s.io/initial-events-end"
# How long the API server may take to stream one collection before it ends the watch (the
# list then fails and waits for the next pass); far longer than 100,000 objects take.
_STREAM_SECONDS = 600
# Answers that say this API server does not stream lists at all (the WatchList feature is
# off: `sendInitialEvents` is refused as invalid), rather than refusing this one request.
_STREAMING_OFF = (400, 422)

T = TypeVar("T")


class KindNotServedError(LookupError):
    """The API server does not serve this resource (e.g. its CRD is not installed)."""


@dataclass(frozen=True)
class ListRequest(ApiVersioned):
    """One collection to list, and what to keep of each item.

    `field_selector` narrows further (`type=Opaque` for Secrets). `namespaces` empty means
    every namespace except `excluded_namespaces` (filtered by the API server with a field
    selector, and again here). `keep` names the top-level fields kept
    besides `metadata` (whose `managedFields` are dropped); `apiVersion` and `kind` are set on
    every item, because list items of built-in kinds and metadata-only lists lack them.
    """

    api_version: str
    kind: str
    resource: str
    label_selector: str = ""
    field_selector: str = ""
    namespaces: Sequence[str] = ()
    excluded_namespaces: Collection[str] = ()
    metadata_only: bool = True
    keep: Sequence[str] = ()
    page_size: int = 500

    @classmethod
    def of(cls, kind: KnownKind, **options: Any) -> ListRequest:
        """A list of `kind`'s collection (a registry entry, or a kind a policy names with its
        `resource`); `options` are the other fields."""
        return cls(api_version=kind.api_version, kind=kind.kind, resource=kind.resource, **options)


def list_all(api: KubeApi, request: ListRequest) -> list[dict[str, Any]]:
    """Every item of the collection(s), trimmed (see `list_each`)."""
    return list_each(api, request, lambda item: item)


def list_each(
    api: KubeApi, request: ListRequest, handle: Callable[[dict[str, Any]], T | None]
) -> list[T]:
    """`handle(item)` for every item of the collection(s) as its page arrives; all or nothing.

    Only one page of objects is held at a time: `handle` keeps what it needs (None: nothing).
    Lists with `limit` and `continue`; a 410 Gone (expired continue token) restarts that
    namespace's list from the beginning, discarding what was handled, so a caller never plans
    on a partial list (retention counts revisions). A custom resource is streamed instead
    (see the module). Raises `KindNotServedError` on a 404 for the collection, or the API error
    that stopped the list.
    """
    results: list[T] = []
    if request.namespaces:
        for namespace in request.namespaces:
            if namespace not in request.excluded_namespaces:
                results += _list_one(api, request, namespace, handle)
    else:
        results = _list_one(api, request, None, handle)
    return results


def _list_one(
    api: KubeApi,
    request: ListRequest,
    namespace: str | None,
    handle: Callable[[dict[str, Any]], T | None],
) -> list[T]:
    path = kind_path(request, namespace=namespace)
    selectors: list[tuple[str, Any]] = []
    if request.label_selector:
        selectors.append(("labelSelector", request.label_selector))
    fields = [request.field_selector] if request.field_selector else []
    if namespace is None:
        # metadata.namespace is a field selector every resource supports, custom ones included.
        fields += (f"metadata.namespace!={n}" for n in sorted(request.excluded_namespaces))
    if fields:
        selectors.append(("fieldSelector", ",".join(fields)))
    if request.custom and api.streams_lists:
        try:
            return _stream_one(api, request, path, selectors, handle)
        except _StreamRefusedError as refused:
            if refused.status in _STREAMING_OFF:
                api.streams_lists = False
                logger.info(
                    "this API server does not stream lists (%s); listing in pages",
                    refused.description,
                )
    base: list[tuple[str, Any]] = [("limit", request.page_size), *selectors]
    accept = METADATA_LIST_ONLY if request.metadata_only else "application/json"
    restarts = 0
    while True:
        results: list[T] = []
        token = ""
        try:
            while True:
                query = [*base, ("continue", token)] if token else base
                page = api.get(path, query=query, accept=accept)
                for item in page.get("items") or ():
                    kept = _handled(item, request, handle)
                    if kept is not None:
                        results.append(kept)
                token = (page.get("metadata") or {}).get("continue") or ""
                del page
                if not token:
                    return results
        except ApiError as exc:
            if exc.status == 404:
                raise KindNotServedError(f"{request.api_version} {request.resource}") from exc
            if exc.status == 410 and token and restarts < _MAX_RESTARTS:
                restarts += 1
                logger.info(
                    "continue token expired (410 Gone); listing %s again from the start",
                    request.resource,
                    extra={"apiVersion": request.api_version, "restart": restarts},
                )
                continue
            raise


class _StreamRefusedError(Exception):
    """The API server refused the streaming list before sending any object."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(str(error))
        self.status = error.status
        self.description = str(error)


def _stream_one(
    api: KubeApi,
    request: ListRequest,
    path: str,
    selectors: list[tuple[str, Any]],
    handle: Callable[[dict[str, Any]], T | None],
) -> list[T]:
    """The collection as a watch that begins with its objects and is closed at the bookmark
    that ends them. Raises `_StreamRefusedError` if refused up front (a 4xx other than 404:
    the caller lists in pages), `KindNotServedError` on a 404, `ApiError` if the stream fails
    or ends before that bookmark (the caller discards what was handled)."""
    query = [
        *selectors,
        ("watch", "true"),
        ("sendInitialEvents", "true"),
        ("resourceVersionMatch", "NotOlderThan"),
        ("allowWatchBookmarks", "true"),
        ("timeoutSeconds", _STREAM_SECONDS),
    ]
    accept = METADATA_ONLY if request.metadata_only else "application/json"
    results: list[T] = []
    started = False
    with contextlib.closing(api.stream(path, query=query, accept=accept)) as events:
        try:
            for event in events:
                started = True
                kind = event.get("type") if isinstance(event, dict) else None
                obj = event.get("object") if isinstance(event, dict) else None
                if not isinstance(obj, dict):
                    raise ApiError(f"streaming list of {request.resource}: an event without object")
                if kind == "ADDED":
                    kept = _handled(obj, request, handle)
                    if kept is not None:
                        results.append(kept)
                elif kind == "BOOKMARK":
                    annotations = (obj.get("metadata") or {}).get("annotations") or {}
                    if annotations.get(_INITIAL_EVENTS_END) == "true":
                        return results
                elif kind == "ERROR":
                    code = obj.get("code")
                    status = code if isinstance(code, int) else 500
                    raise ApiError.from_answer(
                        status, str(obj.get("reason", "")), orjson.dumps(obj)
                    )
                # MODIFIED and DELETED come only after that bookmark: never read.
        except ApiError as exc:
            if started:
                raise
            if exc.status == 404:
                raise KindNotServedError(f"{request.api_version} {request.resource}") from exc
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                raise _StreamRefusedError(exc) from exc
            raise
    raise ApiError(
        f"streaming list of {request.resource}: the API server ended it before its last object"
    )


def _handled(
    item: dict[str, Any], request: ListRequest, handle: Callable[[dict[str, Any]], T | None]
) -> T | None:
    """What `handle` keeps of one listed item, trimmed; None for an excluded namespace's (the
    field selector already left those out: this is the second check)."""
    trimmed = _trim(item, request)
    if trimmed["metadata"].get("namespace", "") in request.excluded_namespaces:
        return None
    return handle(trimmed)


def _trim(item: dict[str, Any], request: ListRequest) -> dict[str, Any]:
    metadata = item.get("metadata") or {}
    metadata.pop("managedFields", None)
    trimmed = {"apiVersion": request.api_version, "kind": request.kind, "metadata": metadata}
    for key in request.keep:
        if key in item:
            trimmed[key] = item[key]
    return trimmed
