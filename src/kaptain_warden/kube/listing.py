"""The sweeper's lister: paginated, label-selected lists, metadata-only unless the decision
must read status."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import METADATA_LIST_ONLY, resource_path
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.policies.kinds import ApiVersioned

__all__ = ["KindNotServedError", "ListRequest", "list_all"]

logger = logging.getLogger(__name__)

# A `continue` token expires with the etcd compaction window (about five minutes); the API
# server then answers 410 Gone and the list must start over (API concepts, "Retrieving large
# results sets in chunks"). Three fresh starts in a row mean something else is wrong.
_MAX_RESTARTS = 3


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
    """Every item of the collection(s), all or nothing.

    Lists with `limit` and `continue`; a 410 Gone (expired continue token) restarts that
    namespace's list from the beginning, discarding what was read, so a caller never plans
    on a partial list (retention counts revisions). Raises `KindNotServedError` on a 404 for
    the collection, or the API error that stopped the list.
    """
    items: list[dict[str, Any]] = []
    if request.namespaces:
        for namespace in request.namespaces:
            if namespace not in request.excluded_namespaces:
                items += _list_one(api, request, namespace)
    else:
        items = _list_one(api, request, None)
    excluded = request.excluded_namespaces
    return [i for i in items if i["metadata"].get("namespace", "") not in excluded]


def _list_one(api: KubeApi, request: ListRequest, namespace: str | None) -> list[dict[str, Any]]:
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
    restarts = 0
    while True:
        items: list[dict[str, Any]] = []
        token = ""
        try:
            while True:
                query = [*base, ("continue", token)] if token else base
                page = api.get(path, query=query, accept=accept)
                items += (_trim(i, request) for i in page.get("items") or ())
                token = (page.get("metadata") or {}).get("continue") or ""
                if not token:
                    return items
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
