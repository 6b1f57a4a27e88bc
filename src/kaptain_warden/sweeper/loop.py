"""One sweep pass (list, decide, protect, delete) and the loop that repeats it."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import resource_path
from kaptain_warden.kube.errors import ApiError, describe_error, error_status
from kaptain_warden.kube.listing import KindNotServedError, ListRequest, list_all
from kaptain_warden.kube.parents import ParentOwnerResolver
from kaptain_warden.policies.expiry import (
    Decision,
    creator_to_check,
    decide,
    hold,
    is_revision,
    owner_of,
    rule_id_of,
)
from kaptain_warden.policies.expiry_warnings import expiry_warning, state_of
from kaptain_warden.policies.kinds import KnownKind
from kaptain_warden.policies.model import Policy
from kaptain_warden.policies.objects import string_map
from kaptain_warden.policies.secret_refs import holders_reason
from kaptain_warden.policies.timestamps import parse_time
from kaptain_warden.sweeper.backfill import BackfillResult, OwnerResolver, backfill
from kaptain_warden.sweeper.creators import LivePods, find_live_pods, record_creator_gone
from kaptain_warden.sweeper.deleter import Candidate, Deleter, DeletionSummary, run_deletions
from kaptain_warden.sweeper.in_use import find_secret_holders
from kaptain_warden.sweeper.metrics import SweeperMetrics
from kaptain_warden.sweeper.report import ReportEntry
from kaptain_warden.sweeper.revisions import plan_revisions
from kaptain_warden.sweeper.settings import SweeperSettings
from kaptain_warden.sweeper.warner import Due, Warner

__all__ = ["CycleReport", "Sweeper", "run_forever"]

logger = logging.getLogger(__name__)

#: Called with the pass's entries after every decision is made and before any delete (tests
#: use it to change the cluster between list and delete).
AfterDecisions = Callable[[Sequence[ReportEntry]], None]
#: Returns why this replica must not delete now (e.g. the Lease is not ours), or None.
Guard = Callable[[], str | None]


@dataclass
class CycleReport:
    """Everything one pass saw, decided and did."""

    evaluated_at: datetime
    entries: list[ReportEntry]
    duration: float = 0.0
    not_served: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    deletion: DeletionSummary = field(
        default_factory=lambda: DeletionSummary(attempted=0, deleted=0, errors=0, stopped=None)
    )
    backfilled: int = 0
    warned: int = 0

    @property
    def complete(self) -> bool:
        """True when every kind was read and every due delete was sent and did not fail (a
        spent budget is fine; a deferred delete is not done)."""
        return not self.errors and self.deletion.errors == 0 and self.deletion.deferred == 0

    @property
    def to_delete(self) -> list[ReportEntry]:
        """Entries decided `delete`."""
        return [e for e in self.entries if e.action == "delete"]


class Sweeper:
    """Runs passes against one API server under one policy; remembers across passes which
    kinds are not served, so their absence is logged once, not every pass."""

    def __init__(
        self,
        api: KubeApi,
        *,
        policy: Policy,
        settings: SweeperSettings,
        metrics: SweeperMetrics | None = None,
        resolve_owner: OwnerResolver | None = None,
    ) -> None:
        self.api = api
        self.policy = policy
        self.settings = settings
        self.metrics = metrics
        if resolve_owner is None:
            # Backfill asks parents for their owner, like the admission server does.
            resolver = ParentOwnerResolver(api.api_client, keys=policy.keys, budget_seconds=5.0)

            def resolve_owner(namespace: str, obj: Mapping[str, Any]) -> str | None:
                return resolver.inherited_owner(namespace=namespace, obj=obj)

        self._resolve_owner = resolve_owner
        self._not_served: set[str] = set()
        self._warner = Warner(
            api,
            keys=policy.keys,
            dry_run=settings.dry_run,
            reporting_instance=settings.identity,
            metrics=metrics,
        )
        self._deleter = Deleter(
            api,
            propagation_policy=policy.settings.propagation_policy,
            dry_run=settings.dry_run,
            reporting_instance=settings.identity,
            metrics=metrics,
        )

    def run_once(
        self,
        *,
        now: datetime,
        guard: Guard | None = None,
        after_decisions: AfterDecisions | None = None,
    ) -> CycleReport:
        """One pass at `now`: backfill (if on), list, decide, protect Secrets in use, delete.

        Never raises for API errors: a kind that cannot be listed is reported in `errors` and
        its objects are left for the next pass; a failing object is kept, with the reason.
        """
        began = time.monotonic()
        report = CycleReport(evaluated_at=now, entries=[])
        if self.settings.backfill:
            filled = self._backfill(now, report)
            report.backfilled = filled.stamped
            report.errors += filled.errors
            report.entries += filled.entries

        listed: list[tuple[KnownKind, dict[str, Any]]] = []
        for kind in self.policy.kinds:
            objects = self._list(kind, report)
            listed += ((kind, obj) for obj in objects)

        revisions = [obj for _, obj in listed if is_revision(obj)]
        plan = (
            plan_revisions(self.api, revisions=revisions, policy=self.policy, now=now)
            if revisions
            else {}
        )
        live = self._live_creators(listed, report)
        # When the sweeper saw a creator gone: now, or the wall clock when previewing a later
        # instant (--at): a Pod cannot have been seen gone after it was looked for.
        seen = min(now, datetime.now(UTC))
        decided: list[tuple[KnownKind, dict[str, Any], Decision]] = []
        newly_gone: set[int] = set()
        for kind, obj in listed:
            uid = creator_to_check(obj, self.policy)
            namespace = str((obj.get("metadata") or {}).get("namespace", ""))
            missing = uid is not None and live.missing(namespace, uid)
            if missing:
                newly_gone.add(id(obj))
            decision = self._decide(obj, plan, now, seen if missing else None)
            decided.append((kind, obj, decision))
        decided = self._protect_secrets_in_use(decided, report)

        candidates: list[Candidate] = []
        warnings: list[Due] = []
        gone: list[tuple[KnownKind, ReportEntry, str]] = []
        for kind, obj, decision in decided:
            entry = _entry(kind, obj, decision, self.policy, now)
            report.entries.append(entry)
            if id(obj) in newly_gone and decision.action == "keep":
                version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
                gone.append((kind, entry, version))
            if decision.action == "delete":
                candidates.append(Candidate(entry=entry, kind=kind, cause=decision.cause))
            elif warning := expiry_warning(obj=obj, policy=self.policy, decision=decision, now=now):
                version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
                warnings.append(Due(kind, entry, version, warning))
        report.entries.sort(key=lambda e: (e.namespace, e.api_version, e.kind, e.name))
        self._count(decided, now)

        if after_decisions is not None:
            after_decisions(report.entries)
        self._record_gone(gone, guard=guard, seen=seen)
        report.warned = self._warn(warnings, guard=guard, now=now)
        # Most overdue first, so a spent budget leaves the freshest for the next pass.
        candidates.sort(
            key=lambda c: (
                c.entry.expires_at is None,
                c.entry.expires_at or now,
                c.entry.namespace,
                c.entry.name,
            )
        )
        report.deletion = run_deletions(
            self._deleter,
            candidates,
            budget=self.settings.max_deletes_per_cycle,
            batch_size=self.settings.delete_batch_size,
            workers=self.settings.delete_workers,
            guard=guard,
        )
        report.duration = time.monotonic() - began
        self._summarize(report)
        return report

    # -- steps -----------------------------------------------------------------------------

    def _backfill(self, now: datetime, report: CycleReport) -> BackfillResult:
        since: datetime | None = None
        webhook = self.settings.backfill_since_webhook
        if webhook is not None:
            path = resource_path(
                group="admissionregistration.k8s.io",
                version="v1",
                resource="mutatingwebhookconfigurations",
                name=webhook,
            )
            try:
                configuration = self.api.get(path)
                since = parse_time((configuration.get("metadata") or {}).get("creationTimestamp"))
            except ApiError as exc:
                # Absent: the webhook is not installed, so it missed nothing. Unreadable:
                # which objects it missed is unknown; backfill waits for a later pass.
                if error_status(exc) != 404:
                    report.errors.append(
                        f"backfill: cannot read MutatingWebhookConfiguration {webhook}: "
                        f"{describe_error(exc)}"
                    )
                logger.warning(
                    "backfill skipped: cannot read MutatingWebhookConfiguration %s: %s",
                    webhook,
                    describe_error(exc),
                )
                return BackfillResult()
            if since is None:
                report.errors.append(f"backfill: {webhook} has no readable creationTimestamp")
                return BackfillResult()
        return backfill(
            self.api,
            policy=self.policy,
            namespaces=self.settings.namespaces,
            dry_run=self.settings.dry_run,
            now=now,
            resolve_owner=self._resolve_owner,
            page_size=self.settings.page_size,
            created_after=since,
        )

    def _list(self, kind: KnownKind, report: CycleReport) -> list[dict[str, Any]]:
        name = f"{kind.resource}.{kind.group}" if kind.group else kind.resource
        request = ListRequest(
            api_version=kind.api_version,
            kind=kind.kind,
            resource=kind.resource,
            label_selector=self.policy.keys.managed_selector,
            namespaces=self.settings.namespaces,
            excluded_namespaces=self.policy.settings.all_excluded_namespaces,
            # Only kinds whose completion matters are read whole; everything else (Secrets
            # above all: their data never enters the sweeper) is listed as metadata.
            metadata_only=not kind.needs_status,
            keep=("status",) if kind.needs_status else (),
            page_size=self.settings.page_size,
        )
        try:
            objects = list_all(self.api, request)
        except KindNotServedError:
            report.not_served.append(name)
            if name not in self._not_served:
                self._not_served.add(name)
                logger.info(
                    "%s is not served by this API server (CRD not installed?); skipping it",
                    name,
                    extra={"apiVersion": kind.api_version, "kind": kind.kind},
                )
            return []
        except ApiError as exc:
            report.errors.append(f"listing {name}: {describe_error(exc)}")
            logger.warning(
                "cannot list %s; its objects wait for the next pass: %s",
                name,
                describe_error(exc),
                extra={"apiVersion": kind.api_version, "kind": kind.kind},
            )
            return []
        if name in self._not_served:
            self._not_served.discard(name)
            logger.info("%s is served again", name, extra={"apiVersion": kind.api_version})
        return objects

    def _live_creators(
        self, listed: Sequence[tuple[KnownKind, dict[str, Any]]], report: CycleReport
    ) -> LivePods:
        """The Pods of the namespaces where some object waits for its creator to go."""
        namespaces = {
            str((obj.get("metadata") or {}).get("namespace", ""))
            for _, obj in listed
            if creator_to_check(obj, self.policy) is not None
        }
        if not namespaces:
            return LivePods()
        live = find_live_pods(self.api, namespaces=namespaces, page_size=self.settings.page_size)
        report.errors += live.unreadable.values()
        return live

    def _record_gone(
        self,
        gone: Sequence[tuple[KnownKind, ReportEntry, str]],
        *,
        guard: Guard | None,
        seen: datetime,
    ) -> None:
        """Record `creator-gone-at` on objects whose creator this pass first saw gone."""
        if not gone:
            return
        stopped = guard() if guard is not None else None
        if stopped is not None:
            logger.info("creator-gone-at not recorded this pass: %s", stopped)
            return
        for kind, entry, version in gone:
            record_creator_gone(
                self.api,
                kind=kind,
                entry=entry,
                resource_version=version,
                keys=self.policy.keys,
                seen=seen,
                dry_run=self.settings.dry_run,
            )

    def _decide(
        self,
        obj: Mapping[str, Any],
        plan: Mapping[Any, Any],
        now: datetime,
        creator_missing_since: datetime | None = None,
    ) -> Decision:
        meta = obj.get("metadata") or {}
        try:
            retention = (
                plan.get((meta.get("namespace", ""), meta.get("name", "")))
                if is_revision(obj)
                else None
            )
            return decide(
                obj=obj,
                policy=self.policy,
                now=now,
                retention=retention,
                creator_missing_since=creator_missing_since,
            )
        except Exception as exc:  # one bad object never stops a pass
            logger.exception(
                "could not decide; keeping it",
                extra={
                    "kind": obj.get("kind"),
                    "namespace": meta.get("namespace"),
                    "object": meta.get("name"),
                },
            )
            return Decision("keep", f"kept: could not decide ({type(exc).__name__}: {exc})")

    def _protect_secrets_in_use(
        self,
        decided: list[tuple[KnownKind, dict[str, Any], Decision]],
        report: CycleReport,
    ) -> list[tuple[KnownKind, dict[str, Any], Decision]]:
        """Keep expired Secrets a live workload in their namespace still references."""
        namespaces = {
            obj["metadata"].get("namespace", "")
            for kind, obj, d in decided
            if d.action == "delete" and kind.api_version == "v1" and kind.kind == "Secret"
        }
        if not namespaces:
            return decided
        holders = find_secret_holders(
            self.api,
            namespaces=namespaces,
            page_size=self.settings.page_size,
            volumes_optional=self.settings.dry_run,
        )
        report.errors += holders.unreadable.values()
        result = []
        for kind, obj, decision in decided:
            final = decision
            if decision.action == "delete" and kind.api_version == "v1" and kind.kind == "Secret":
                namespace = obj["metadata"].get("namespace", "")
                name = obj["metadata"].get("name", "")
                if namespace in holders.unreadable:
                    final = hold(decision, f"kept: {holders.unreadable[namespace]}")
                elif held_by := holders.of(namespace, name):
                    final = hold(decision, f"kept: {holders_reason(held_by)}")
            result.append((kind, obj, final))
        return result

    def _warn(self, warnings: Sequence[Due], *, guard: Guard | None, now: datetime) -> int:
        """Warn the owners of objects entering their warning window; how many were warned."""
        if not warnings:
            return 0
        stopped = guard() if guard is not None else None
        if stopped is not None:
            logger.info("no warnings this pass: %s", stopped, extra={"due": len(warnings)})
            return 0
        outcomes = [self._warner.warn(due, now=now) for due in warnings]
        return sum(1 for o in outcomes if o == "warned")

    def _count(
        self, decided: Sequence[tuple[KnownKind, dict[str, Any], Decision]], now: datetime
    ) -> None:
        if self.metrics is None:
            return
        states: Counter[tuple[str, str, str]] = Counter()
        for _, obj, decision in decided:
            namespace = str((obj.get("metadata") or {}).get("namespace", ""))
            rule = rule_id_of(obj, self.policy) or ""
            state = state_of(obj=obj, policy=self.policy, decision=decision, now=now)
            states[(namespace, rule, state)] += 1
        self.metrics.objects.clear()
        for (namespace, rule, where), count in states.items():
            self.metrics.objects.labels(namespace=namespace, rule=rule, state=where).set(count)
        seen: Counter[tuple[str, str, str]] = Counter()
        expired: Counter[tuple[str, str, str]] = Counter()
        for kind, obj, decision in decided:
            key = (kind.group, kind.kind, rule_id_of(obj, self.policy) or "")
            seen[key] += 1
            if decision.action == "delete":
                expired[key] += 1
        self.metrics.seen.clear()
        self.metrics.expired.clear()
        for (group, kind_name, rule), count in seen.items():
            self.metrics.seen.labels(group=group, kind=kind_name, rule=rule).set(count)
            self.metrics.expired.labels(group=group, kind=kind_name, rule=rule).set(
                expired[(group, kind_name, rule)]
            )

    def _summarize(self, report: CycleReport) -> None:
        deletion = report.deletion
        done = "would delete" if self.settings.dry_run else "deleted"
        count = (
            sum(1 for e in report.entries if e.outcome == "would-delete")
            if self.settings.dry_run
            else deletion.deleted
        )
        logger.info(
            "sweep pass %s: %d governed objects, %d due, %s %d%s%s",
            "complete" if report.complete else "INCOMPLETE",
            len(report.entries),
            len(report.to_delete),
            done,
            count,
            f", deferred {deletion.deferred}" if deletion.deferred else "",
            f" (stopped: {deletion.stopped})" if deletion.stopped else "",
            extra={
                "seen": len(report.entries),
                "due": len(report.to_delete),
                "deleted": deletion.deleted,
                "attempted": deletion.attempted,
                "deleteErrors": deletion.errors,
                "deferred": deletion.deferred,
                "stopped": deletion.stopped,
                "errors": report.errors,
                "notServed": report.not_served,
                "backfilled": report.backfilled,
                "warned": report.warned,
                "dryRun": self.settings.dry_run,
                "durationSeconds": round(report.duration, 3),
                "requests": self.api.total,
            },
        )
        if self.metrics is not None:
            self.metrics.cycle_duration.observe(report.duration)
            self.metrics.cycles.labels(result="ok" if report.complete else "incomplete").inc()
            if report.complete:
                self.metrics.last_success.set(time.time())
            if deletion.stopped and deletion.stopped.startswith("delete budget"):
                self.metrics.budget_exhausted.inc()
                self.metrics.budget_streak.inc()
            else:
                self.metrics.budget_streak.set(0)


def _entry(
    kind: KnownKind, obj: Mapping[str, Any], decision: Decision, policy: Policy, now: datetime
) -> ReportEntry:
    meta = obj.get("metadata") or {}
    annotations = string_map(meta.get("annotations"))
    return ReportEntry(
        api_version=kind.api_version,
        kind=kind.kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        rule=rule_id_of(obj, policy),
        owner=owner_of(obj, policy),
        action=decision.action,
        reason=decision.reason,
        expires_at=decision.expires_at,
        state=state_of(obj=obj, policy=policy, decision=decision, now=now),
        notebook=annotations.get(policy.keys.notebook),
        person=annotations.get(policy.keys.profile_owner),
    )


def run_forever(
    sweeper: Sweeper,
    *,
    stop: threading.Event,
    interval: float,
    may_sweep: Callable[[], bool] = lambda: True,
    guard: Guard | None = None,
    heartbeat: Callable[[], None] = lambda: None,
    passed: Callable[[bool], None] = lambda ok: None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    after_decisions: AfterDecisions | None = None,
) -> None:
    """Run passes every `interval` seconds until `stop` is set.

    `stop` is only looked at between passes, so SIGTERM never cuts a pass in half (deletes in
    flight complete and are logged). A replica for which `may_sweep()` is false (not the
    leader) skips its turn. An unexpected error in a pass is logged and the loop goes on:
    the next pass starts from a fresh list. `passed(ok)` hears how each pass ended, and the
    consecutive failures are a gauge (health turns bad after a few, see `Heartbeat`).
    """
    failures = 0
    while not stop.is_set():
        began = time.monotonic()
        heartbeat()
        if may_sweep():
            try:
                sweeper.run_once(now=clock(), guard=guard, after_decisions=after_decisions)
            except Exception:  # the loop outlives any one pass
                failures += 1
                logger.exception(
                    "sweep pass failed; the next pass starts over",
                    extra={"consecutiveFailures": failures},
                )
                if sweeper.metrics is not None:
                    sweeper.metrics.cycles.labels(result="failed").inc()
            else:
                failures = 0
            passed(failures == 0)
            if sweeper.metrics is not None:
                sweeper.metrics.failed_passes.set(failures)
        elif sweeper.metrics is not None:
            sweeper.metrics.cycles.labels(result="skipped").inc()
        heartbeat()
        stop.wait(max(0.0, interval - (time.monotonic() - began)))
    logger.info("sweeper stopped between passes")
