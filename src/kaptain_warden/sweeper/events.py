"""Kubernetes Events (events.k8s.io/v1) the sweeper records on the objects it acts on."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Literal

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import resource_path
from kaptain_warden.kube.errors import ApiError, describe_error
from kaptain_warden.sweeper.report import ReportEntry

__all__ = ["REPORTING_CONTROLLER", "SIMILAR_EVENTS", "DeletionEvents", "record_event"]

logger = logging.getLogger(__name__)

REPORTING_CONTROLLER = "warden.kaptain.io/sweeper"
# An Event's note is at most 1 KiB (events.k8s.io/v1 validation).
_NOTE_LIMIT = 1024


def record_event(
    api: KubeApi,
    *,
    entry: ReportEntry,
    reporting_instance: str,
    action: str,
    reason: str,
    note: str,
    type_: Literal["Normal", "Warning"] = "Normal",
) -> bool:
    """An Event regarding `entry`'s object, in its namespace; True when the API server took it.

    A failure is logged, never raised: an Event is a record, not a condition of the action.
    """
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        # Named like client-go's recorder names them: <object>.<unix nanoseconds, hex>.
        "metadata": {
            "name": f"{entry.name[:230]}.{time.time_ns():x}",
            "namespace": entry.namespace,
        },
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reportingController": REPORTING_CONTROLLER,
        "reportingInstance": reporting_instance[:128],
        "action": action,
        "reason": reason,
        "type": type_,
        "regarding": {
            "apiVersion": entry.api_version,
            "kind": entry.kind,
            "namespace": entry.namespace,
            "name": entry.name,
            "uid": entry.uid,
        },
        "note": note[:_NOTE_LIMIT],
    }
    path = resource_path(
        group="events.k8s.io", version="v1", resource="events", namespace=entry.namespace
    )
    try:
        api.request("POST", path, body=event)
    except ApiError as exc:
        logger.warning(
            "could not record an Event (%s): %s",
            reason,
            describe_error(exc),
            extra={
                "apiVersion": entry.api_version,
                "kind": entry.kind,
                "namespace": entry.namespace,
                "object": entry.name,
                "uid": entry.uid,
                "reason": reason,
            },
        )
        return False
    return True


#: Like Kubernetes' own event recorder (client-go's EventCorrelator aggregates past 10 similar
#: Events): in one delete phase the first this many deletions of a namespace, kind and reason
#: get an Event each; the rest are combined into one Event per group when the phase ends.
SIMILAR_EVENTS = 10


class DeletionEvents:
    """The Events of one delete phase; thread-safe (deletes run on a pool).

    An Event costs the API server a write as dear as the delete itself, so a mass expiry of a
    thousand Secrets would double its work for records nobody reads one by one. Every delete
    still gets its own log line; its own Event only up to `SIMILAR_EVENTS` per group, past
    which one combined Event (regarding the last object, its note naming the others) stands
    for them, as `kubectl get events` shows for a crash-looping Pod.
    """

    def __init__(self, api: KubeApi, *, reporting_instance: str) -> None:
        self._api = api
        self._instance = reporting_instance
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._combined: dict[tuple[str, str, str], list[ReportEntry]] = {}

    def deleted(self, entry: ReportEntry, *, reason: str, note: str) -> None:
        """A deletion: its Event now, or combined at `flush`."""
        key = (entry.namespace, entry.kind, reason)
        with self._lock:
            self._counts[key] += 1
            if self._counts[key] > SIMILAR_EVENTS:
                self._combined.setdefault(key, []).append(entry)
                return
        record_event(
            self._api,
            entry=entry,
            reporting_instance=self._instance,
            action="Delete",
            reason=reason,
            note=note,
        )

    def flush(self) -> None:
        """One Event per group for the deletions past `SIMILAR_EVENTS`."""
        with self._lock:
            combined, self._combined = self._combined, {}
            self._counts.clear()
        for (namespace, kind, reason), entries in sorted(combined.items()):
            names = ", ".join(e.name for e in entries)
            note = (
                f"kaptain-warden deleted {len(entries)} more {kind} objects in {namespace} "
                f"({reason}; each is logged with its rule and owner), combined from similar "
                f"events: {names}"
            )
            if len(note) > _NOTE_LIMIT:
                note = note[: _NOTE_LIMIT - 5].rsplit(", ", 1)[0] + ", ..."
            record_event(
                self._api,
                entry=entries[-1],
                reporting_instance=self._instance,
                action="Delete",
                reason=reason,
                note=note,
            )
