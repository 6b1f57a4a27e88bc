"""Are the creator Pods still there? Read per namespace (metadata only), and the first sighting
of a creator gone recorded on the object as `creator-gone-at`."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from kaptain_warden.kube.api import KubeApi, patch_listed
from kaptain_warden.kube.errors import ApiError, describe_error
from kaptain_warden.kube.listing import KindNotServedError, ListRequest, list_all
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.policies.timestamps import format_time
from kaptain_warden.sweeper.items import SweepItem

__all__ = ["LivePods", "RecordOutcome", "find_live_pods", "record_creator_gone"]

logger = logging.getLogger(__name__)

#: recorded: written; raced: the object changed or went since it was listed (the next pass
#: looks again); would-record: dry run; error: not written, the next pass tries again.
RecordOutcome = Literal["recorded", "raced", "would-record", "error"]


@dataclass
class LivePods:
    """The uids of the Pods that exist, per namespace read, and the namespaces that could not
    be read (their creators count as present: never delete on doubt)."""

    uids: dict[str, frozenset[str]] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)

    def missing(self, namespace: str, uid: str) -> bool:
        """True only when `namespace` was read whole and no Pod in it has `uid` (a Pod of the
        same name with another uid is another Pod: the creator is gone)."""
        pods = self.uids.get(namespace)
        return pods is not None and uid not in pods


def find_live_pods(api: KubeApi, *, namespaces: Iterable[str], page_size: int = 500) -> LivePods:
    """List the Pods of each namespace, metadata only; only the namespaces asked for."""
    result = LivePods()
    for namespace in sorted(set(namespaces)):
        request = ListRequest(
            api_version="v1",
            kind="Pod",
            resource="pods",
            namespaces=(namespace,),
            metadata_only=True,
            page_size=page_size,
        )
        error: Exception | None = None
        try:
            pods = list_all(api, request)
        except KindNotServedError as exc:
            error = exc
        except ApiError as exc:
            error = exc
        if error is not None:
            result.unreadable[namespace] = (
                f"could not list pods in {namespace}: {describe_error(error)}"
            )
            logger.warning(
                "cannot tell whether creator Pods are gone; their objects are kept as if not",
                extra={"namespace": namespace, "error": describe_error(error)},
            )
            continue
        result.uids[namespace] = frozenset(
            str(p["metadata"].get("uid")) for p in pods if p["metadata"].get("uid")
        )
    return result


def record_creator_gone(
    api: KubeApi,
    item: SweepItem,
    *,
    keys: MetadataKeys,
    seen: datetime,
    dry_run: bool,
) -> RecordOutcome:
    """Write `creator-gone-at: seen` on the object, once.

    A merge patch with the listed resourceVersion as a precondition: of two replicas (or two
    passes) that saw the same object, one write wins and the other gets 409, so the instant
    is the first sighting and never moves later once written. The answer is asked for as
    metadata only (a Secret's data never reaches the sweeper).
    """
    entry = item.entry
    fields = {
        "apiVersion": entry.api_version,
        "kind": entry.kind,
        "namespace": entry.namespace,
        "object": entry.name,
        "uid": entry.uid,
        "creatorGoneAt": format_time(seen),
        "dryRun": dry_run,
    }
    if dry_run:
        return "would-record"
    try:
        written = patch_listed(
            api,
            item.kind,
            namespace=entry.namespace,
            name=entry.name,
            resource_version=item.resource_version,
            annotations={keys.creator_gone_at: format_time(seen)},
        )
    except ApiError as exc:
        logger.warning(
            "could not record creator-gone-at; the next pass tries again: %s",
            describe_error(exc),
            extra=fields | {"error": describe_error(exc)},
        )
        return "error"
    if not written:
        logger.info(
            "creator-gone-at not recorded: the object changed or went since it was listed",
            extra=fields,
        )
        return "raced"
    logger.info("recorded the creator Pod gone", extra=fields)
    return "recorded"
