"""Warnings before expiry: the window, whether an object is due one, and what it says."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from kaptain_warden.policies.durations import describe_duration, format_duration
from kaptain_warden.policies.expiry import Decision, rule_id_of
from kaptain_warden.policies.kinds import known_kind
from kaptain_warden.policies.metadata import KNATIVE_NO_GC
from kaptain_warden.policies.model import Policy, Rule
from kaptain_warden.policies.objects import metadata_of, string_map
from kaptain_warden.policies.timestamps import format_time, parse_time

__all__ = [
    "EVENT_REASON",
    "ExpiryWarning",
    "State",
    "creation_warning",
    "expiry_warning",
    "state_of",
    "warn_window",
    "window_of",
]

#: The reason of the Event that warns an owner (type Warning).
EVENT_REASON = "ExpiringSoon"
# The default window: a quarter of the TTL, never more than this.
_DEFAULT_CAP = timedelta(hours=2)
_SKEW = timedelta(minutes=5)

#: Where a governed object stands, for the gauges and `kaptain-warden ls`:
#:   live      its clock runs past the warning window, or no clock runs (not finished, no TTL)
#:   expiring  it expires within its warning window
#:   due       the sweeper deletes it at its next pass
#:   kept      it stays whatever its clocks say: `keep` honoured, protected, held on doubt
State = Literal["live", "expiring", "due", "kept"]


def warn_window(rule: Rule, period: timedelta | None) -> timedelta | None:
    """How long before expiry the owner is warned; None when never.

    The rule's `warnBefore` when set (`0`: never); else the smaller of 2h and a quarter of
    `period` (the object's TTL), or 2h when the TTL is unknown.
    """
    if rule.warn_before is not None:
        return rule.warn_before if rule.warn_before > timedelta(0) else None
    if period is None:
        return _DEFAULT_CAP
    return min(_DEFAULT_CAP, period / 4)


def window_of(obj: Mapping[str, Any], policy: Policy, decision: Decision) -> timedelta | None:
    """The warning window of `obj` under the rule its label names; None: never warned."""
    rule_id = rule_id_of(obj, policy)
    rule = policy.rule_by_id(rule_id) if rule_id else None
    return warn_window(rule, decision.period) if rule is not None else None


def state_of(*, obj: Mapping[str, Any], policy: Policy, decision: Decision, now: datetime) -> State:
    """Where `obj`, decided `decision` at `now`, stands (see `State`)."""
    if decision.action == "delete":
        return "due"
    if decision.kept:
        return "kept"
    window = window_of(obj, policy, decision)
    if (
        decision.expires_at is not None
        and window is not None
        and decision.expires_at - window <= now
    ):
        return "expiring"
    return "live"


@dataclass(frozen=True)
class ExpiryWarning:
    """A warning due to an object's owner: when it goes, the window, and what to do."""

    expires_at: datetime
    window: timedelta
    message: str


def expiry_warning(
    *, obj: Mapping[str, Any], policy: Policy, decision: Decision, now: datetime
) -> ExpiryWarning | None:
    """The warning `obj` is due at `now`, or None.

    Due when the object is kept now, with a clock that runs out within its rule's window, and
    it carries no `warned-at` from within this window (a `warned-at` older than the window
    start warned of an earlier expiry, before the TTL was raised). Never for `keep`, held
    or protected objects, and never after the expiry (then the deletion Event speaks).
    """
    if decision.action != "keep" or decision.kept or decision.expires_at is None:
        return None
    if decision.expires_at <= now:
        return None
    rule_id = rule_id_of(obj, policy)
    rule = policy.rule_by_id(rule_id) if rule_id else None
    if rule is None:
        return None
    window = warn_window(rule, decision.period)
    if window is None or decision.expires_at - window > now:
        return None
    keys = policy.keys
    warned = parse_time(string_map(metadata_of(obj).get("annotations")).get(keys.warned_at))
    # A warned-at from the future (beyond clock skew between replicas) proves nothing.
    if warned is not None and decision.expires_at - window <= warned <= now + _SKEW:
        return None
    return ExpiryWarning(
        expires_at=decision.expires_at,
        window=window,
        message=_message(obj=obj, policy=policy, rule=rule, decision=decision, now=now),
    )


def creation_warning(
    *, obj: Mapping[str, Any], policy: Policy, rule: Rule, now: datetime
) -> str | None:
    """An admission warning for a new object whose TTL ends within its warning window."""
    annotations = string_map(metadata_of(obj).get("annotations"))
    expires = parse_time(annotations.get(policy.keys.expires_at))
    if expires is None or (rule.allow_keep and annotations.get(policy.keys.keep) == "true"):
        return None
    created = parse_time(annotations.get(policy.keys.created_at)) or now
    window = warn_window(rule, expires - created if expires > created else None)
    if window is None or expires - window > now:
        return None
    limit = format_duration(rule.max_ttl)
    return (
        f"kaptain-warden deletes this {obj.get('kind', 'object')} at {format_time(expires)} "
        f"(in {describe_duration(max(expires - now, timedelta(0)), largest_units=2)}); "
        f"set annotation {policy.keys.ttl} up to {limit} (rule {rule.id}) to keep it longer"
    )


def _message(
    *,
    obj: Mapping[str, Any],
    policy: Policy,
    rule: Rule,
    decision: Decision,
    now: datetime,
) -> str:
    keys = policy.keys
    assert decision.expires_at is not None  # checked by expiry_warning
    expires_at = decision.expires_at
    meta = metadata_of(obj)
    kind = str(obj.get("kind", "object"))
    name = str(meta.get("name", ""))
    namespace = str(meta.get("namespace", ""))
    entry = known_kind(str(obj.get("apiVersion", "")), kind)
    resource = entry.resource if entry is not None else kind.lower()
    left = describe_duration(expires_at - now, largest_units=2)
    head = (
        f"kaptain-warden deletes this {kind} at {format_time(expires_at)} (in {left}; "
        f"rule {rule.id})."
    )
    limit = format_duration(rule.max_ttl)
    if decision.cause == "retention":
        how = (
            f" To keep this revision, annotate it {KNATIVE_NO_GC}=true "
            f"(kubectl annotate revision {name} -n {namespace} {KNATIVE_NO_GC}=true)."
        )
    elif decision.cause == "creator-gone":
        how = (
            " The notebook Pod that created it is gone (expireWhenCreatorGone); a TTL does not"
            " hold it back."
        )
    elif decision.cause == "ttl-after-finished":
        how = (
            f" To extend it, set {keys.ttl_after_finished} (counted from completion) up to "
            f"{limit}: kubectl annotate {resource} {name} -n {namespace} "
            f"{keys.ttl_after_finished}=<duration> --overwrite."
        )
    else:
        created = parse_time(string_map(meta.get("annotations")).get(keys.created_at))
        until = f", i.e. until {format_time(created + rule.max_ttl)}" if created else ""
        how = (
            f" To extend it, set {keys.ttl} (counted from creation) up to {limit}{until}: "
            f"kaptain-warden extend {kind.lower()}/{name} -n {namespace} --ttl <duration>."
        )
    keep = (
        f" To keep it for good: kubectl annotate {resource} {name} -n {namespace} {keys.keep}=true."
        if rule.allow_keep
        else ""
    )
    return head + how + keep
