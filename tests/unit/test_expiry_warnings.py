"""Tier 1: the warning window, who is due a warning, what it says, and the states counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_expiry import job, managed, revision, verdict

from kaptain_warden.policies.expiry import decide
from kaptain_warden.policies.expiry_warnings import (
    creation_warning,
    expiry_warning,
    state_of,
    warn_window,
)
from kaptain_warden.policies.loader import PolicyError, load_policy, load_policy_text
from kaptain_warden.policies.timestamps import format_time

P = "warden.kaptain.io"
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
POLICY = load_policy()
SECRETS = POLICY.rule_by_id("credentials-secrets")


def policy_with(warn_before: str | None) -> Any:
    line = f"    warnBefore: {warn_before!r}\n" if warn_before is not None else ""
    return load_policy_text(
        f"""
apiVersion: warden.kaptain.io/v1alpha1
kind: WardenPolicy
rules:
  - id: credentials-secrets
    match: {{kinds: [{{apiVersion: v1, kind: Secret}}]}}
    ttl: 24h
    maxTtl: 30d
    allowKeep: true
{line}"""
    )


def secret(*, created: datetime, expires: datetime, **kw: Any) -> dict[str, Any]:
    return managed(created=created, expires=expires, **kw)


def warning_for(obj: dict[str, Any], policy: Any = POLICY, now: datetime = NOW) -> Any:
    decision = decide(obj=obj, policy=policy, now=now)
    return expiry_warning(obj=obj, policy=policy, decision=decision, now=now)


@pytest.mark.parametrize(
    ("ttl", "window"),
    [
        (timedelta(days=1), 2 * HOUR),  # a quarter is 6h: capped at 2h
        (4 * HOUR, HOUR),  # a quarter
        (timedelta(minutes=20), timedelta(minutes=5)),
        (None, 2 * HOUR),  # TTL unknown: the cap
    ],
)
def test_the_default_window_is_the_smaller_of_2h_and_a_quarter_of_the_ttl(ttl, window):
    assert SECRETS is not None
    assert warn_window(SECRETS, ttl) == window


def test_warn_before_sets_the_window_and_zero_turns_it_off():
    explicit = policy_with("30m").rule_by_id("credentials-secrets")
    off = policy_with("0").rule_by_id("credentials-secrets")
    assert explicit is not None and off is not None
    assert warn_window(explicit, timedelta(days=1)) == timedelta(minutes=30)
    assert warn_window(off, timedelta(days=1)) is None


def test_a_bad_warn_before_is_refused_with_where_it_is():
    with pytest.raises(PolicyError, match=r"rules\[0\] \(id \"credentials-secrets\"\)\.warnBefore"):
        policy_with("soon")


def test_an_object_entering_its_window_is_due_one_warning_naming_expiry_and_remedy():
    expires = NOW + 90 * timedelta(minutes=1)
    obj = secret(created=expires - 24 * HOUR, expires=expires)
    warning = warning_for(obj)
    assert warning is not None
    assert warning.expires_at == expires and warning.window == 2 * HOUR
    assert format_time(expires) in warning.message
    assert f"{P}/ttl" in warning.message and "30d" in warning.message
    # created + maxTtl: the latest the TTL can reach
    assert format_time(expires - 24 * HOUR + timedelta(days=30)) in warning.message
    assert f"{P}/keep=true" in warning.message  # the rule allows keep


def test_no_warning_outside_the_window_nor_after_expiry():
    created = NOW - 20 * HOUR
    assert warning_for(secret(created=created, expires=NOW + 3 * HOUR)) is None
    assert warning_for(secret(created=created, expires=NOW - HOUR)) is None


def test_no_warning_for_keep_or_when_the_rule_turns_warnings_off():
    expires = NOW + HOUR
    kept = secret(created=expires - 24 * HOUR, expires=expires, keep="true")
    assert warning_for(kept) is None
    plain = secret(created=expires - 24 * HOUR, expires=expires)
    assert warning_for(plain, policy_with("0")) is None


def test_warned_at_within_the_window_means_already_warned():
    expires = NOW + HOUR
    obj = secret(created=expires - 24 * HOUR, expires=expires)
    obj["metadata"]["annotations"][f"{P}/warned-at"] = format_time(NOW - 30 * timedelta(minutes=1))
    assert warning_for(obj) is None


def test_a_warning_from_before_the_window_was_about_an_earlier_expiry():
    # Warned, then the TTL was raised: the new window warns again.
    expires = NOW + HOUR
    obj = secret(created=expires - 24 * HOUR, expires=expires)
    obj["metadata"]["annotations"][f"{P}/warned-at"] = format_time(NOW - 5 * HOUR)
    assert warning_for(obj) is not None


def test_a_warned_at_from_the_future_proves_nothing():
    expires = NOW + HOUR
    obj = secret(created=expires - 24 * HOUR, expires=expires)
    obj["metadata"]["annotations"][f"{P}/warned-at"] = format_time(NOW + 30 * timedelta(minutes=1))
    assert warning_for(obj) is not None


def test_a_finished_job_is_warned_with_the_ttl_after_finished_remedy():
    minute = timedelta(minutes=1)
    # ttl-after-finished 1h: the window is a quarter, 15m.
    early = job(finished=NOW - 30 * minute, after="1h", created=NOW - 2 * HOUR)
    assert warning_for(early) is None
    late = job(finished=NOW - 50 * minute, after="1h", created=NOW - 2 * HOUR)
    warning = warning_for(late)
    assert warning is not None and warning.window == 15 * minute
    assert warning.expires_at == NOW + 10 * minute
    assert f"{P}/ttl-after-finished" in warning.message


def test_states_live_expiring_due_kept():
    created = NOW - 20 * HOUR
    cases = {
        "live": secret(created=created, expires=NOW + 3 * HOUR),
        "expiring": secret(created=created, expires=NOW + HOUR),
        "due": secret(created=created, expires=NOW - HOUR),
        "kept": secret(created=created, expires=NOW - HOUR, keep="true"),
    }
    for expected, obj in cases.items():
        decision = decide(obj=obj, policy=POLICY, now=NOW)
        assert state_of(obj=obj, policy=POLICY, decision=decision, now=NOW) == expected


def test_a_create_whose_ttl_ends_within_the_window_carries_an_admission_warning():
    policy = policy_with("2h")
    rule = policy.rule_by_id("credentials-secrets")
    assert rule is not None
    short = secret(created=NOW, expires=NOW + HOUR)
    message = creation_warning(obj=short, policy=policy, rule=rule, now=NOW)
    assert message is not None and format_time(NOW + HOUR) in message
    long = secret(created=NOW, expires=NOW + 24 * HOUR)
    assert creation_warning(obj=long, policy=policy, rule=rule, now=NOW) is None


def test_a_revision_about_to_leave_retention_is_warned_with_no_gc_as_the_remedy():
    # Default retention: retainSinceLastActive 15h, retainSinceCreate 48h: the window is 2h.
    soon = verdict("keep", "retained until ...", NOW + HOUR)
    obj = revision()
    decision = decide(obj=obj, policy=POLICY, now=NOW, retention=soon)
    warning = expiry_warning(obj=obj, policy=POLICY, decision=decision, now=NOW)
    assert warning is not None and warning.expires_at == NOW + HOUR
    assert "serving.knative.dev/no-gc=true" in warning.message
    later = verdict("keep", "retained until ...", NOW + 3 * HOUR)
    decision = decide(obj=obj, policy=POLICY, now=NOW, retention=later)
    assert expiry_warning(obj=obj, policy=POLICY, decision=decision, now=NOW) is None
    protected = verdict("keep", "protected: routingState=active", None, protected=True)
    decision = decide(obj=obj, policy=POLICY, now=NOW, retention=protected)
    assert expiry_warning(obj=obj, policy=POLICY, decision=decision, now=NOW) is None
