"""Safe deletion: uid precondition, explicit propagation, a budget, a log line each, Events."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import kind_path
from kaptain_warden.kube.errors import ApiError, describe_error, error_status
from kaptain_warden.policies.expiry import Cause
from kaptain_warden.policies.model import PropagationPolicy
from kaptain_warden.sweeper.events import DeletionEvents
from kaptain_warden.sweeper.items import SweepItem
from kaptain_warden.sweeper.report import Outcome, ReportEntry

if TYPE_CHECKING:
    from kaptain_warden.sweeper.metrics import SweeperMetrics

__all__ = [
    "Deleter",
    "DeletionSummary",
    "is_transient",
    "is_unavailable",
    "run_deletions",
]

logger = logging.getLogger(__name__)

_EVENT_REASONS: dict[Cause | None, str] = {
    "ttl": "Expired",
    "ttl-after-finished": "ExpiredAfterFinished",
    "retention": "RevisionRetention",
    "creator-gone": "CreatorGone",
    None: "Expired",
}
# Statuses worth retrying later: the API server is overloaded or unwell (429, 5xx).
_RETRY_LATER = frozenset({429, 500, 502, 503, 504})
# Statuses that say the request was not carried out because the server (or the way to it) is
# unavailable: the delete is deferred, not failed.
_UNAVAILABLE = frozenset({429, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    """True for errors that say "not now" (429, 5xx, timeouts, connection errors).

    After one of these the cycle stops deleting and the next cycle retries: backing off
    instead of hammering a struggling API server. Other errors (403, 422) concern one object.
    """
    status = error_status(exc)
    return status is None or status in _RETRY_LATER


def is_unavailable(exc: BaseException) -> bool:
    """True when the API server could not be reached or could not take the request now: no
    answer at all (refused, reset, timed out), 429, 502, 503, 504.

    A delete that fails so is `deferred`, not an `error`: nothing is wrong with the object and
    the next pass, starting from a fresh list, sends it again (a timed-out delete that did
    land is then `gone`). A 500 is an answer about this request and stays an error.
    """
    status = error_status(exc)
    return status is None or status in _UNAVAILABLE


@dataclass(frozen=True)
class DeletionSummary:
    """What the delete phase did, and why it stopped early (None when it did not)."""

    attempted: int
    deleted: int
    errors: int
    stopped: str | None
    # Deletes not carried out because the API server was unavailable (sent and failed so,
    # or not sent after backing off): the next pass redoes them.
    deferred: int = 0


class Deleter:
    """Deletes (or, in dry run, reports) one object at a time; thread-safe."""

    def __init__(
        self,
        api: KubeApi,
        *,
        propagation_policy: PropagationPolicy,
        dry_run: bool,
        reporting_instance: str,
        metrics: SweeperMetrics | None = None,
    ) -> None:
        self._api = api
        self._propagation = propagation_policy
        self._dry_run = dry_run
        self._instance = reporting_instance[:128]
        self._metrics = metrics
        self._events = DeletionEvents(api, reporting_instance=self._instance)

    @property
    def metrics(self) -> SweeperMetrics | None:
        """Where outcomes are counted (None: nowhere)."""
        return self._metrics

    def delete(self, candidate: SweepItem) -> bool:
        """Delete one object and record the outcome on its entry; True when it was transient.

        Never raises for an API error: 404 (already gone) and 409 (the uid precondition
        failed: the name now belongs to a new object) are expected outcomes.
        """
        entry, kind = candidate.entry, candidate.kind
        fields = _log_fields(entry) | {
            "propagationPolicy": self._propagation,
            "dryRun": self._dry_run,
        }
        if self._dry_run:
            entry.outcome = "would-delete"
            logger.info(
                "DRY RUN, NOT DELETED: would delete %s %s/%s (%s)",
                entry.kind,
                entry.namespace,
                entry.name,
                entry.reason,
                extra=fields | {"outcome": entry.outcome},
            )
            return False
        path = kind_path(kind, namespace=entry.namespace, name=entry.name)
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            # Background unless configured: the API's default for batch/v1 Jobs orphans their
            # Pods. The uid precondition makes the API server refuse with 409 when the name
            # now belongs to an object we never decided about.
            "propagationPolicy": self._propagation,
            "preconditions": {"uid": entry.uid},
        }
        transient = False
        try:
            self._api.request("DELETE", path, body=body)
        except ApiError as exc:
            status = error_status(exc)
            outcome: Outcome
            if status == 404:
                outcome, entry.detail = "gone", "already deleted"
            elif status == 409:
                outcome, entry.detail = "conflict", "uid precondition failed: recreated"
            elif is_unavailable(exc):
                outcome, entry.detail = "deferred", f"API server unavailable: {describe_error(exc)}"
                transient = True
            else:
                outcome, entry.detail = "error", describe_error(exc)
                transient = is_transient(exc)
            entry.outcome = outcome
            level = logging.WARNING if outcome in ("error", "deferred") else logging.INFO
            logger.log(
                level,
                "not deleted %s %s/%s: %s",
                entry.kind,
                entry.namespace,
                entry.name,
                entry.detail,
                extra=fields | {"outcome": outcome, "error": entry.detail},
            )
            if self._metrics is not None and outcome == "error":
                self._metrics.delete_errors.labels(
                    group=kind.group, kind=kind.kind, status=str(status)
                ).inc()
            if self._metrics is not None and outcome == "deferred":
                self._metrics.deferred.labels(group=kind.group, kind=kind.kind).inc()
            return transient
        entry.outcome = "deleted"
        logger.info(
            "deleted %s %s/%s (%s)",
            entry.kind,
            entry.namespace,
            entry.name,
            entry.reason,
            extra=fields | {"outcome": "deleted"},
        )
        if self._metrics is not None:
            self._metrics.deleted.labels(
                group=kind.group, kind=kind.kind, rule=entry.rule or ""
            ).inc()
        self._record_event(candidate)
        return False

    def _record_event(self, candidate: SweepItem) -> None:
        entry = candidate.entry
        self._events.deleted(
            entry,
            reason=_EVENT_REASONS[candidate.decision.cause],
            note=f"kaptain-warden deleted this {entry.kind} (rule {entry.rule}, owner "
            f"{entry.owner}{_provenance(entry)}): {entry.reason}",
        )

    def flush_events(self) -> None:
        """Record the combined Events of the deletions past the per-group ones (see
        `DeletionEvents`); the end of every delete phase."""
        self._events.flush()


def _provenance(entry: ReportEntry) -> str:
    """`, notebook N, person P` for what provenance the object carried."""
    parts = [f"notebook {entry.notebook}"] if entry.notebook else []
    parts += [f"person {entry.person}"] if entry.person else []
    return "".join(f", {p}" for p in parts)


def run_deletions(
    deleter: Deleter,
    candidates: Sequence[SweepItem],
    *,
    budget: int,
    batch_size: int = 50,
    workers: int = 8,
    guard: Callable[[], str | None] | None = None,
) -> DeletionSummary:
    """Delete `candidates` in order, in batches, within `budget` deletions this cycle.

    Before each batch `guard` may stop the phase (it returns why, e.g. the lease is no longer
    ours). A transient API error stops the phase after its batch: the next cycle retries.
    Candidates not reached are marked `deferred` when the phase backed off from an unavailable
    API server, else `not-attempted`.
    """
    attempted = 0
    stopped: str | None = None
    backed_off = False
    position = 0
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="delete") as pool:
        while position < len(candidates):
            if attempted >= budget:
                stopped = (
                    f"delete budget of {budget} per cycle spent; "
                    f"{len(candidates) - position} left for the next cycle"
                )
                break
            if guard is not None:
                stopped = guard()
                if stopped is not None:
                    break
            batch = candidates[position : position + min(batch_size, budget - attempted)]
            position += len(batch)
            attempted += len(batch)
            transient = list(pool.map(deleter.delete, batch))
            if any(transient):
                stopped = "API server errors; backing off until the next cycle"
                backed_off = any(c.entry.outcome == "deferred" for c in batch)
                break
    deleter.flush_events()
    for candidate in candidates[position:]:
        candidate.entry.outcome = "deferred" if backed_off else "not-attempted"
        if stopped:
            candidate.entry.detail = stopped
        if backed_off and deleter.metrics is not None:
            deleter.metrics.deferred.labels(
                group=candidate.kind.group, kind=candidate.kind.kind
            ).inc()
    if stopped:
        logger.warning("delete phase stopped: %s", stopped, extra={"attempted": attempted})
    deleted = sum(1 for c in candidates if c.entry.outcome == "deleted")
    errors = sum(1 for c in candidates if c.entry.outcome == "error")
    deferred = sum(1 for c in candidates if c.entry.outcome == "deferred")
    return DeletionSummary(
        attempted=attempted, deleted=deleted, errors=errors, stopped=stopped, deferred=deferred
    )


def _log_fields(entry: ReportEntry) -> dict[str, Any]:
    # `object`, not `name`: extra keys must not collide with LogRecord attributes.
    return {
        "apiVersion": entry.api_version,
        "kind": entry.kind,
        "namespace": entry.namespace,
        "object": entry.name,
        "uid": entry.uid,
        "rule": entry.rule,
        "owner": entry.owner,
        "reason": entry.reason,
    }
