"""One sweep pass (list, decide, protect, delete) and the loop that repeats it."""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import resource_path
from kaptain_warden.kube.errors import ApiError, describe_error, error_status
from kaptain_warden.kube.listing import KindNotServedError, ListRequest, list_each
from kaptain_warden.policies.expiry import Decision, Protection, creator_to_check, decide
from kaptain_warden.policies.kinds import KnownKind, registered_kind
from kaptain_warden.policies.model import Policy
from kaptain_warden.policies.retention import RevisionVerdict
from kaptain_warden.policies.secret_refs import holders_reason
from kaptain_warden.policies.timestamps import parse_time
from kaptain_warden.sweeper.creators import LivePods, find_live_pods, record_creator_gone
from kaptain_warden.sweeper.deleter import Deleter, DeletionSummary, run_deletions
from kaptain_warden.sweeper.in_use import ListedHolders, find_secret_holders
from kaptain_warden.sweeper.items import SweepItem
from kaptain_warden.sweeper.report import ReportEntry
from kaptain_warden.sweeper.revisions import RevisionPlan, plan_revisions
from kaptain_warden.sweeper.settings import SweeperSettings
from kaptain_warden.sweeper.warner import Warner

if TYPE_CHECKING:
    from kaptain_warden.sweeper.backfill import BackfillResult, OwnerResolver
    from kaptain_warden.sweeper.metrics import SweeperMetrics

__all__ = ["CycleReport", "Sweeper", "run_forever"]

logger = logging.getLogger(__name__)

#: Called with the pass's entries after every decision is made and before any delete (tests
#: use it to change the cluster between list and delete).
AfterDecisions = Callable[[Sequence[ReportEntry]], None]
#: Returns why this replica must not delete now (e.g. the Lease is not ours), or None.
Guard = Callable[[], str | None]
T = TypeVar("T")


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
        with _cyclic_gc_paused():
            return self._pass(now=now, guard=guard, after_decisions=after_decisions)

    def _pass(
        self, *, now: datetime, guard: Guard | None, after_decisions: AfterDecisions | None
    ) -> CycleReport:
        began = time.monotonic()
        report = CycleReport(evaluated_at=now, entries=[])
        if self.settings.backfill:
            filled = self._backfill(now, report)
            report.backfilled = filled.stamped
            report.errors += filled.errors
            report.entries += filled.entries

        # When the sweeper saw a creator gone: now, or the wall clock when previewing a later
        # instant (--at): a Pod cannot have been seen gone after it was looked for.
        seen = min(now, datetime.now(UTC))
        creators = _Creators(self.api, page_size=self.settings.page_size)
        items: list[SweepItem] = []
        revisions: list[tuple[KnownKind, dict[str, Any]]] = []
        listed: ListedHolders | None = None
        # Kinds kept while referenced (Secrets) first: the namespaces where one is due are
        # then known, and a governed kind that also holds Secrets (Jobs, training jobs, ...)
        # is read once, whole, for both its decisions and the in-use check.
        for kind in sorted(self.policy.kinds, key=lambda k: not k.kept_while_referenced):
            if kind.retention:
                # Retention counts a Configuration's revisions together: they wait for the plan.
                revisions += ((kind, obj) for obj in self._list(kind, report, lambda o: o))
                continue

            def decided(obj: dict[str, Any], kind: KnownKind = kind) -> SweepItem:
                return self._item(kind, obj, now, seen, creators)

            if listed is None and not kind.kept_while_referenced:
                listed = ListedHolders(
                    frozenset(
                        i.entry.namespace for i in items if i.due and i.kind.kept_while_referenced
                    )
                )
            holder = registered_kind(kind.api_version, kind.kind)
            if (
                listed is not None
                and listed.namespaces
                and holder is not None
                and holder.holds_secrets
                and not holder.cluster_scoped
            ):
                items += self._list_holder(kind, holder, report, listed, decided)
                continue
            items += self._list(kind, report, decided)
        if revisions:
            plan = plan_revisions(
                self.api, revisions=[obj for _, obj in revisions], policy=self.policy, now=now
            )
            items += (
                self._item(kind, obj, now, seen, creators, plan=plan) for kind, obj in revisions
            )
            del revisions
        report.errors += creators.live.unreadable.values()
        self._protect_secrets_in_use(items, report, listed)

        report.entries += (item.entry for item in items)
        report.entries.sort(key=lambda e: (e.namespace, e.api_version, e.kind, e.name))
        self._count(items)

        if after_decisions is not None:
            after_decisions(report.entries)
        self._record_gone([i for i in items if i.record_creator_gone], guard=guard, seen=seen)
        report.warned = self._warn([i for i in items if i.warning], guard=guard, now=now)
        # Most overdue first, so a spent budget leaves the freshest for the next pass.
        candidates = sorted(
            (i for i in items if i.due),
            key=lambda i: (
                i.entry.expires_at is None,
                i.entry.expires_at or now,
                i.entry.namespace,
                i.entry.name,
            ),
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
        # Imported here: a sweep without backfill (most, and every preview) does not pay for
        # the stamping code and the parent lookups at start-up.
        from kaptain_warden.sweeper.backfill import BackfillResult, backfill  # noqa: PLC0415

        if self._resolve_owner is None:
            from kaptain_warden.kube.parents import ParentOwnerResolver  # noqa: PLC0415

            # Backfill asks parents for their owner, like the admission server does.
            resolver = ParentOwnerResolver(
                self.api.api_client, keys=self.policy.keys, budget_seconds=5.0
            )

            def resolve_owner(namespace: str, obj: Mapping[str, Any]) -> str | None:
                return resolver.inherited_owner(namespace=namespace, obj=obj)

            self._resolve_owner = resolve_owner
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

    def _list_holder(
        self,
        kind: KnownKind,
        holder: KnownKind,
        report: CycleReport,
        listed: ListedHolders,
        decided: Callable[[dict[str, Any]], SweepItem],
    ) -> list[SweepItem]:
        """List a governed kind that also holds Secrets once, whole and unselected (any of
        its objects may hold a Secret): the managed ones are decided, the references of
        all of them in `listed`'s namespaces are indexed for the in-use check."""
        managed = self.policy.keys.managed

        def handle(
            obj: dict[str, Any],
        ) -> tuple[SweepItem | None, tuple[str, str, frozenset[str]] | None] | None:
            references = listed.references(holder, obj)
            labels = obj["metadata"].get("labels")
            item = (
                decided(obj) if isinstance(labels, dict) and labels.get(managed) == "true" else None
            )
            return None if item is None and references is None else (item, references)

        errors = len(report.errors)
        found = self._list(kind, report, handle, holder=holder)
        if len(report.errors) == errors:  # read whole (or not served: it holds nothing)
            listed.add(holder, (r for _, r in found if r is not None))
        return [item for item, _ in found if item is not None]

    def _list(
        self,
        kind: KnownKind,
        report: CycleReport,
        handle: Callable[[dict[str, Any]], T | None],
        *,
        holder: KnownKind | None = None,
    ) -> list[T]:
        """`handle` each listed object of `kind` as its page arrives; [] when it cannot be
        listed (reported) or is not served. With `holder`, every object of the kind is read
        whole (no label selector), with the fields its Secret references live in."""
        name = f"{kind.resource}.{kind.group}" if kind.group else kind.resource
        keep = {"status"} if kind.needs_status else set()
        if holder is not None:
            keep |= set(holder.read_fields)
        request = ListRequest.of(
            kind,
            label_selector="" if holder is not None else self.policy.keys.managed_selector,
            namespaces=self.settings.namespaces,
            excluded_namespaces=self.policy.settings.all_excluded_namespaces,
            # Only kinds whose completion matters (or whose Secret references are read) are
            # read whole; everything else (Secrets above all: their data never enters the
            # sweeper) is listed as metadata.
            metadata_only=not keep,
            keep=tuple(sorted(keep)),
            page_size=self.settings.page_size,
        )
        try:
            objects = list_each(self.api, request, handle)
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

    def _record_gone(
        self, gone: Sequence[SweepItem], *, guard: Guard | None, seen: datetime
    ) -> None:
        """Record `creator-gone-at` on objects whose creator this pass first saw gone."""
        if not gone:
            return
        stopped = guard() if guard is not None else None
        if stopped is not None:
            logger.info("creator-gone-at not recorded this pass: %s", stopped)
            return
        for item in gone:
            record_creator_gone(
                self.api,
                item,
                keys=self.policy.keys,
                seen=seen,
                dry_run=self.settings.dry_run,
            )

    def _item(
        self,
        kind: KnownKind,
        obj: Mapping[str, Any],
        now: datetime,
        seen: datetime,
        creators: _Creators,
        *,
        plan: RevisionPlan | None = None,
    ) -> SweepItem:
        """Decide one listed object; its record (the object itself is not kept)."""
        meta = obj.get("metadata") or {}
        try:
            uid = creator_to_check(obj, self.policy)
            missing = uid is not None and creators.missing(str(meta.get("namespace", "")), uid)
            retention: RevisionVerdict | None = None
            protection: Protection | None = None
            if plan is not None:
                answer = plan.get((meta.get("namespace", ""), meta.get("name", "")))
                if isinstance(answer, Protection):
                    protection = answer
                else:
                    retention = answer
            decision = decide(
                obj=obj,
                policy=self.policy,
                now=now,
                retention=retention,
                creator_missing_since=seen if missing else None,
                protection=protection,
            )
            return SweepItem.of(
                kind, obj, decision, policy=self.policy, now=now, creator_missing=missing
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
            kept = Decision("keep", f"kept: could not decide ({type(exc).__name__}: {exc})")
            return SweepItem.of(kind, obj, kept, policy=self.policy, now=now)

    def _protect_secrets_in_use(
        self, items: Sequence[SweepItem], report: CycleReport, listed: ListedHolders | None
    ) -> None:
        """Keep due Secrets a live workload in their namespace still references (the holder
        kinds `listed` already read are not listed again)."""
        due = [i for i in items if i.due and i.kind.kept_while_referenced]
        if not due:
            return
        holders = find_secret_holders(
            self.api,
            namespaces={i.entry.namespace for i in due},
            page_size=self.settings.page_size,
            volumes_optional=self.settings.dry_run,
            excluded_namespaces=self.policy.settings.all_excluded_namespaces,
            listed=listed,
        )
        report.errors += holders.unreadable.values()
        for item in due:
            namespace, name = item.entry.namespace, item.entry.name
            if namespace in holders.unreadable:
                item.protect(Protection(f"kept: {holders.unreadable[namespace]}"))
            elif held_by := holders.of(namespace, name):
                item.protect(Protection(f"kept: {holders_reason(held_by)}"))

    def _warn(self, warnings: Sequence[SweepItem], *, guard: Guard | None, now: datetime) -> int:
        """Warn the owners of objects entering their warning window; how many were warned."""
        if not warnings:
            return 0
        stopped = guard() if guard is not None else None
        if stopped is not None:
            logger.info("no warnings this pass: %s", stopped, extra={"due": len(warnings)})
            return 0
        outcomes = [self._warner.warn(item, now=now) for item in warnings]
        return sum(1 for o in outcomes if o == "warned")

    def _count(self, items: Sequence[SweepItem]) -> None:
        if self.metrics is None:
            return
        states: Counter[tuple[str, str, str]] = Counter()
        seen: Counter[tuple[str, str, str]] = Counter()
        expired: Counter[tuple[str, str, str]] = Counter()
        for item in items:
            entry = item.entry
            states[(entry.namespace, entry.rule or "", entry.state or "live")] += 1
            key = (item.kind.group, item.kind.kind, entry.rule or "")
            seen[key] += 1
            if item.due:
                expired[key] += 1
        self.metrics.objects.clear()
        for (namespace, rule, where), count in states.items():
            self.metrics.objects.labels(namespace=namespace, rule=rule, state=where).set(count)
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


class _Creators:
    """Are creator Pods still there? Each namespace's Pods are listed (metadata only) the first
    time an object in it waits for its creator to go, and only then."""

    def __init__(self, api: KubeApi, *, page_size: int) -> None:
        self._api = api
        self._page_size = page_size
        self.live = LivePods()

    def missing(self, namespace: str, uid: str) -> bool:
        if namespace not in self.live.uids and namespace not in self.live.unreadable:
            read = find_live_pods(self._api, namespaces=(namespace,), page_size=self._page_size)
            self.live.uids |= read.uids
            self.live.unreadable |= read.unreadable
        return self.live.missing(namespace, uid)


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during a pass.

    A pass builds hundreds of thousands of dicts and lists (decoded objects, decisions, the
    report) that live until it ends; each batch of new ones triggers the interpreter's cyclic
    collector, which scans the ones that survived, again and again: a third of the sweeper's
    CPU in a 100,000-object pass. What a pass builds holds no reference cycles (decoded JSON,
    records, strings) and is freed by reference counting when the pass ends; the collector
    runs again from then on, and would collect any cycle a pass left behind.
    """
    if not gc.isenabled():  # the embedding program chose; leave it be
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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
