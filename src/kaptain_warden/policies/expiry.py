"""Is a managed object due for deletion? One pure answer for the sweep loop, report and tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from kaptain_warden.policies.completion import finished_at
from kaptain_warden.policies.durations import (
    DurationError,
    describe_duration,
    format_duration,
    parse_duration,
)
from kaptain_warden.policies.evaluate import is_excluded_namespace
from kaptain_warden.policies.kinds import registered_kind_of
from kaptain_warden.policies.model import Policy, Rule
from kaptain_warden.policies.objects import metadata_of, string_map
from kaptain_warden.policies.retention import Action, RetentionSettings, RevisionVerdict
from kaptain_warden.policies.timestamps import format_time, parse_time

__all__ = [
    "Action",
    "Cause",
    "Decision",
    "Protection",
    "creator_to_check",
    "decide",
    "is_revision",
    "owner_of",
    "protect",
    "rule_id_of",
]

#: Which clock sent an object away: `expires-at`, `ttl-after-finished`, revision retention, or
#: `expireWhenCreatorGone`.
Cause = Literal["ttl", "ttl-after-finished", "retention", "creator-gone"]


@dataclass(frozen=True)
class Decision:
    """What the sweeper does with one object, why, and when it goes.

    `expires_at` is the instant the object is (or was) due: for a `delete`, the earliest clock
    that ran out (None when only a count rule, maxNonActive, removes it); for a `keep`, the
    earliest clock still running (None when no clock runs: no TTL, not finished, kept on
    purpose, or held by minNonActive). `period` is the length of the clock behind a keep's
    `expires_at` (the TTL, or retention's age limit), from which the warning window follows.
    `kept` marks a keep on purpose or on doubt: `keep` honoured, a Knative protection, an
    unreadable clock, a Secret in use.
    """

    action: Action
    reason: str
    expires_at: datetime | None = None
    cause: Cause | None = None
    period: timedelta | None = None
    # A keep despite the policy: `keep` honoured, or held on doubt or by a protection.
    kept: bool = False


@dataclass(frozen=True)
class Protection:
    """Something besides the object's own clocks keeps it, whatever they say: a live workload
    uses the Secret, Knative protects the Revision, or retention could not be planned for it
    (its Configuration is unreadable). `reason` is the whole report reason (`kept: ...`,
    `protected: ...`)."""

    reason: str


def rule_id_of(obj: Mapping[str, Any], policy: Policy) -> str | None:
    """The rule label of `obj`, or None."""
    return string_map(metadata_of(obj).get("labels")).get(policy.keys.rule) or None


def owner_of(obj: Mapping[str, Any], policy: Policy) -> str | None:
    """The exact owner (annotation), else the label-safe one (label), else None."""
    meta = metadata_of(obj)
    key = policy.keys.owner
    return (
        string_map(meta.get("annotations")).get(key)
        or string_map(meta.get("labels")).get(key)
        or None
    )


def is_revision(obj: Mapping[str, Any]) -> bool:
    """True for objects of a kind revision retention applies to (Knative Revisions, any
    version of their group)."""
    kind = registered_kind_of(obj)
    return kind is not None and kind.retention


def protect(decision: Decision, protection: Protection) -> Decision:
    """Keep an object a protection holds, on purpose (`kept`), however its clocks stand.

    The one way anything blocks a delete: in-use Secrets and protected or unplanned Revisions
    alike. A delete it stops says what would have happened: `<protection> (otherwise: ...)`.
    """
    reason = protection.reason
    if decision.action == "delete":
        reason = f"{reason} (otherwise: {decision.reason})"
    return Decision(action="keep", reason=reason, kept=True)


def decide(
    *,
    obj: Mapping[str, Any],
    policy: Policy,
    now: datetime,
    retention: RevisionVerdict | None = None,
    creator_missing_since: datetime | None = None,
    protection: Protection | None = None,
) -> Decision:
    """Decide whether a listed object is due for deletion at `now`.

    `obj` carries `apiVersion`, `kind` and `metadata` (and `status` for kinds whose completion
    matters). Only what is written on the object counts (every owner saw the TTL on their
    object before it can go), read under the rule its label names. In order:

    1. Never deleted: objects without `managed=true`, in an excluded namespace, already being
       deleted, without a rule label, or whose rule is gone from the policy or does not
       govern the kind; objects with `keep: "true"` where the rule allows it.
    2. A present but unreadable `expires-at`, `ttl-after-finished` or `created-at` keeps the
       object: never delete on doubt.
    3. `expires-at` at or before `now` is due. `ttl-after-finished` counts from completion read
       from the kind's own status (`completion.finished_at`), and never from before the object
       was stamped (`created-at`): a backfilled Job that finished last year gets the full TTL.
       Not finished means this clock does not run.
    4. Revisions: `retention` is the plan for this revision; retention's `delete` also sends it
       away. A revision Knative protects (a `protected` verdict) or one without a plan is kept
       even when a TTL ran out, through `protect`, like any other `protection`.
    5. `expireWhenCreatorGone`: an object with a `created-by-pod-uid` is due that long after its
       creator Pod went, counted from `creator-gone-at` (when a sweeper first saw it gone), or
       else from `creator_missing_since` (the sweeper sees it gone now and records that
       instant). A Pod uid never comes back, so once gone, gone for good.
    6. `protection` (e.g. a live workload uses this Secret) keeps it: `protect`.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    keys = policy.keys
    meta = metadata_of(obj)
    labels = string_map(meta.get("labels"))
    annotations = string_map(meta.get("annotations"))
    kind = str(obj.get("kind", ""))

    if labels.get(keys.managed) != "true":
        return Decision("keep", f"not managed (no {keys.managed}=true label): never deleted")
    namespace = meta.get("namespace")
    if is_excluded_namespace(policy, namespace if isinstance(namespace, str) else ""):
        return Decision("keep", f"namespace {namespace or '(none)'} is excluded by the policy")
    if meta.get("deletionTimestamp"):
        return Decision("keep", "already being deleted")
    rule_id = labels.get(keys.rule)
    if not rule_id:
        return Decision("keep", f"no {keys.rule} label: no rule to apply")
    rule = policy.rule_by_id(rule_id)
    if rule is None:
        return Decision("keep", f"rule {rule_id!r} is not in the policy: nothing to apply")
    if not rule.governs_kind(str(obj.get("apiVersion", "")), kind):
        return Decision("keep", f"rule {rule_id!r} does not govern {obj.get('apiVersion')} {kind}")

    keep = annotations.get(keys.keep)
    ignored_keep = ""
    if keep == "true":
        if rule.allow_keep:
            return Decision(
                "keep", f'annotation {keys.keep}="true" (rule {rule_id!r} allows it)', kept=True
            )
        ignored_keep = f'; {keys.keep}="true" ignored: rule {rule_id!r} does not allow it'

    clocks = _clocks(obj, annotations, policy, now)
    if isinstance(clocks, str):
        return Decision("keep", clocks, kept=True)
    creator = _creator_clock(rule, annotations, policy, now, creator_missing_since)
    if isinstance(creator, str):
        return Decision("keep", creator, kept=True)
    if creator is not None:
        clocks.append(creator)

    if is_revision(obj):
        if retention is not None and retention.protected:
            protection = protection or Protection(retention.reason)
        elif retention is not None:
            clocks.append(_retention_clock(retention, now, rule.retention))
        elif protection is None:
            protection = Protection("kept: revision retention was not planned")
    decision = _by_clocks(clocks, rule_id, ignored_keep, now)
    return protect(decision, protection) if protection is not None else decision


def _by_clocks(clocks: list[_Clock], rule_id: str, ignored_keep: str, now: datetime) -> Decision:
    """Due when a clock ran out (the earliest says when); else kept until the nearest one."""
    due = [c for c in clocks if c.due]
    if due:
        first = min(due, key=lambda c: (c.deadline is None, c.deadline or now))
        return Decision(
            "delete",
            "; ".join(c.reason for c in due) + ignored_keep,
            first.deadline,
            first.cause,
        )
    running = [c for c in clocks if c.deadline is not None and c.deadline > now]
    reasons = "; ".join(c.reason for c in clocks) or f"rule {rule_id!r} sets no expiry"
    if not running:
        return Decision("keep", reasons + ignored_keep)
    nearest = min(running, key=lambda c: c.deadline or now)
    return Decision("keep", reasons + ignored_keep, nearest.deadline, nearest.cause, nearest.period)


@dataclass(frozen=True)
class _Clock:
    cause: Cause
    due: bool
    deadline: datetime | None
    reason: str
    period: timedelta | None = None


def _clocks(
    obj: Mapping[str, Any], annotations: Mapping[str, str], policy: Policy, now: datetime
) -> list[_Clock] | str:
    """The object's TTL clocks, or the reason (a string) why they cannot be read."""
    keys = policy.keys
    clocks: list[_Clock] = []
    raw_expires = annotations.get(keys.expires_at)
    if raw_expires is not None:
        expires = parse_time(raw_expires)
        if expires is None:
            return f"kept: unreadable {keys.expires_at}={raw_expires!r}"
        if expires <= now:
            clocks.append(
                _Clock("ttl", True, expires, f"expired: {keys.expires_at} {_at(expires, now)}")
            )
        else:
            # The TTL is what separates stamping from expiry (a raised TTL moves expires-at).
            created = parse_time(annotations.get(keys.created_at))
            period = expires - created if created is not None and created < expires else None
            clocks.append(_Clock("ttl", False, expires, f"expires {_at(expires, now)}", period))

    raw_after = annotations.get(keys.ttl_after_finished)
    if raw_after is not None:
        try:
            after = parse_duration(raw_after)
        except DurationError:
            return f"kept: unreadable {keys.ttl_after_finished}={raw_after!r}"
        raw_created = annotations.get(keys.created_at)
        created = parse_time(raw_created)
        if raw_created is not None and created is None:
            return f"kept: unreadable {keys.created_at}={raw_created!r}"
        finished = finished_at(obj)
        if finished is None:
            clocks.append(
                _Clock(
                    "ttl-after-finished",
                    False,
                    None,
                    f"not finished: {keys.ttl_after_finished}={format_duration(after)} "
                    "counts from completion",
                )
            )
        else:
            start = max(finished, created) if created is not None else finished
            deadline = start + after
            since = (
                f"finished {_at(finished, now)}"
                if start == finished
                else f"finished {_at(finished, now)}, before it was stamped "
                f"{_at(start, now)} (the clock starts at stamping)"
            )
            if deadline <= now:
                clocks.append(
                    _Clock(
                        "ttl-after-finished",
                        True,
                        deadline,
                        f"{since}; {keys.ttl_after_finished}={format_duration(after)} ran out "
                        f"{_at(deadline, now)}",
                    )
                )
            else:
                clocks.append(
                    _Clock(
                        "ttl-after-finished",
                        False,
                        deadline,
                        f"{since}; deleted {format_duration(after)} after, {_at(deadline, now)}",
                        after,
                    )
                )
    return clocks


def creator_to_check(obj: Mapping[str, Any], policy: Policy) -> str | None:
    """The creator Pod uid the sweeper must look for before deciding `obj`: set when its rule
    has `expireWhenCreatorGone` and no sweeper has yet recorded the creator gone."""
    meta = metadata_of(obj)
    annotations = string_map(meta.get("annotations"))
    rule_id = string_map(meta.get("labels")).get(policy.keys.rule)
    rule = policy.rule_by_id(rule_id) if rule_id else None
    if rule is None or rule.expire_when_creator_gone is None:
        return None
    if policy.keys.creator_gone_at in annotations:
        return None
    return annotations.get(policy.keys.created_by_pod_uid) or None


def _creator_gone_since(
    annotations: Mapping[str, str], policy: Policy, missing_since: datetime | None
) -> datetime | str | None:
    """Since when the object's creator Pod is gone: its `creator-gone-at`, else
    `missing_since`; None when not known to be gone; a string when the annotation is
    unreadable."""
    raw = annotations.get(policy.keys.creator_gone_at)
    if raw is None:
        return missing_since
    parsed = parse_time(raw)
    return (
        parsed if parsed is not None else f"kept: unreadable {policy.keys.creator_gone_at}={raw!r}"
    )


def _creator_clock(
    rule: Rule,
    annotations: Mapping[str, str],
    policy: Policy,
    now: datetime,
    missing_since: datetime | None,
) -> _Clock | str | None:
    keys = policy.keys
    grace = rule.expire_when_creator_gone
    if grace is None or not annotations.get(keys.created_by_pod_uid):
        return None
    since = _creator_gone_since(annotations, policy, missing_since)
    if since is None or isinstance(since, str):
        return since
    pod = annotations.get(keys.created_by_pod) or annotations[keys.created_by_pod_uid]
    deadline = since + grace
    gone = f"creator Pod {pod} gone since {format_time(since)}"
    if deadline <= now:
        return _Clock(
            "creator-gone",
            True,
            deadline,
            f"{gone}; expireWhenCreatorGone={format_duration(grace)} ran out {_at(deadline, now)}",
        )
    return _Clock(
        "creator-gone",
        False,
        deadline,
        f"{gone}; deleted {format_duration(grace)} after, {_at(deadline, now)}",
        grace,
    )


def _retention_clock(
    verdict: RevisionVerdict, now: datetime, settings: RetentionSettings | None
) -> _Clock:
    """Retention's answer as a clock: its age deadline counts only when it decides the answer."""
    if verdict.action == "delete":
        deadline = (
            verdict.deletes_at
            if verdict.deletes_at is not None and verdict.deletes_at <= now
            else None
        )
        return _Clock("retention", True, deadline, f"retention: {verdict.reason}")
    # A keep whose age clock already ran out is held by a count (minNonActive): no known time.
    deadline = (
        verdict.deletes_at if verdict.deletes_at is not None and verdict.deletes_at > now else None
    )
    ages = (
        [a for a in (settings.retain_since_create, settings.retain_since_last_active) if a]
        if settings is not None
        else []
    )
    return _Clock(
        "retention", False, deadline, f"retention: {verdict.reason}", min(ages, default=None)
    )


def _at(moment: datetime, now: datetime) -> str:
    """`at 2024-06-01T12:00:00Z (3h ago)` or `... (in 2d4h)`."""
    delta = now - moment
    if delta < timedelta(0):
        return f"at {format_time(moment)} (in {describe_duration(-delta, largest_units=2)})"
    return f"at {format_time(moment)} ({describe_duration(delta, largest_units=2)} ago)"
