"""Warnings before expiry: claim the object with `warned-at`, then record an ExpiringSoon Event."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from kaptain_warden.kube.api import KubeApi, patch_listed
from kaptain_warden.kube.errors import ApiError, describe_error
from kaptain_warden.policies.expiry_warnings import EVENT_REASON
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.policies.timestamps import format_time
from kaptain_warden.sweeper.events import record_event
from kaptain_warden.sweeper.items import SweepItem

if TYPE_CHECKING:
    from kaptain_warden.sweeper.metrics import SweeperMetrics

__all__ = ["WarnOutcome", "Warner"]

logger = logging.getLogger(__name__)

#: warned: claimed and recorded; raced: another replica (or a change) got there first;
#: would-warn: dry run; error: the claim failed, the next pass tries again.
WarnOutcome = Literal["warned", "raced", "would-warn", "error"]


class Warner:
    """Warns each owner once per expiry, whatever the number of replicas and restarts.

    The claim is a merge patch that writes `warned-at` with the listed resourceVersion as a
    precondition: of two replicas that listed the same object, one patch succeeds and the
    other gets 409, so exactly one records the Event. A replica that dies between the claim
    and the Event leaves the object claimed and unannounced (at most once, never twice).
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        keys: MetadataKeys,
        dry_run: bool,
        reporting_instance: str,
        metrics: SweeperMetrics | None = None,
    ) -> None:
        self._api = api
        self._keys = keys
        self._dry_run = dry_run
        self._instance = reporting_instance
        self._metrics = metrics

    def warn(self, due: SweepItem, *, now: datetime) -> WarnOutcome:
        """Claim and announce one object due a warning (`due.warning`); never raises for API
        errors."""
        entry, warning = due.entry, due.warning
        if warning is None:
            raise ValueError(f"{entry.kind} {entry.namespace}/{entry.name} is due no warning")
        fields: dict[str, Any] = {
            "apiVersion": entry.api_version,
            "kind": entry.kind,
            "namespace": entry.namespace,
            "object": entry.name,
            "uid": entry.uid,
            "rule": entry.rule,
            "owner": entry.owner,
            "expiresAt": format_time(warning.expires_at),
            "dryRun": self._dry_run,
        }
        if self._dry_run:
            logger.info(
                "DRY RUN, NOT WARNED: would warn %s %s/%s",
                entry.kind,
                entry.namespace,
                entry.name,
                extra=fields,
            )
            return "would-warn"
        try:
            written = patch_listed(
                self._api,
                due.kind,
                namespace=entry.namespace,
                name=entry.name,
                resource_version=due.resource_version,
                annotations={self._keys.warned_at: format_time(now)},
            )
        except ApiError as exc:
            logger.warning(
                "could not claim the expiry warning: %s",
                describe_error(exc),
                extra=fields | {"error": describe_error(exc)},
            )
            if self._metrics is not None:
                self._metrics.warning_errors.labels(rule=entry.rule or "").inc()
            return "error"
        if not written:
            logger.info(
                "not warned: the object changed or went away since it was listed; "
                "the next pass looks again",
                extra=fields,
            )
            return "raced"
        record_event(
            self._api,
            entry=entry,
            reporting_instance=self._instance,
            action="Warn",
            reason=EVENT_REASON,
            note=warning.message,
            type_="Warning",
        )
        logger.info(
            "warned the owner of %s %s/%s: expires at %s",
            entry.kind,
            entry.namespace,
            entry.name,
            format_time(warning.expires_at),
            extra=fields,
        )
        if self._metrics is not None:
            self._metrics.warnings.labels(rule=entry.rule or "").inc()
        return "warned"
