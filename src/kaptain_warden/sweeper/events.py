"""Kubernetes Events (events.k8s.io/v1) the sweeper records on the objects it acts on."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any, Literal

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import resource_path
from kaptain_warden.kube.errors import ApiError, describe_error
from kaptain_warden.sweeper.report import ReportEntry

__all__ = ["REPORTING_CONTROLLER", "record_event"]

logger = logging.getLogger(__name__)

REPORTING_CONTROLLER = "warden.kaptain.io/sweeper"


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
        "note": note[:1024],
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
