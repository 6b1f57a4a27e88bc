"""The sweeper's lister: paginated, label-selected lists, metadata-only unless the decision
must read status."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import METADATA_LIST_ONLY, resource_path
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.policies.kinds import ApiVersioned

__all__ = ["KindNotServedError", "ListRequest", "list_all", "list_each"]

logger = logging.getLogger(__name__)

# A `continue` token expires with the etcd compaction window (about five minutes); the API
# server then answers 410 Gone and the list must start over (API concepts, "Retrieving large
# results sets in chunks"). Three fresh starts in a row mean something else is wrong.
_MAX_RESTARTS = 3

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
    on a partial list (retention counts revisions). Raises `KindNotServedError` on a 404 for
    the collection, or the API error that stopped the list.
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
    path = resource_path(
        group=request.group,
        version=request.version,
        resource=request.resource,
        namespace=namespace,
    )
    base: list[tuple[str, Any]] = [("limit", request.page_size)]
    if request.label_selector:
        base.append(("labelSelector", request.label_selector))
    fields = [request.field_selector] if request.field_selector else []
    if namespace is None:
        # metadata.namespace is a field selector every resource supports, custom ones included.
        fields += (f"metadata.namespace!={n}" for n in sorted(request.excluded_namespaces))
    if fields:
        base.append(("fieldSelector", ",".join(fields)))
    accept = METADATA_LIST_ONLY if request.metadata_only else "application/json"
    excluded = request.excluded_namespaces
    restarts = 0
    while True:
        results: list[T] = []
        token = ""
        try:
            while True:
                query = [*base, ("continue", token)] if token else base
                page = api.get(path, query=query, accept=accept)
                for item in page.get("items") or ():
                    trimmed = _trim(item, request)
                    if trimmed["metadata"].get("namespace", "") in excluded:
                        continue
                    kept = handle(trimmed)
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


def _trim(item: dict[str, Any], request: ListRequest) -> dict[str, Any]:
    metadata = item.get("metadata") or {}
    metadata.pop("managedFields", None)
    trimmed = {"apiVersion": request.api_version, "kind": request.kind, "metadata": metadata}
    for key in request.keep:
        if key in item:
            trimmed[key] = item[key]
    return trimmed
