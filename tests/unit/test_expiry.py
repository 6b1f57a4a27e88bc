"""Tier 1: is a managed object due? Expiry, ttl-after-finished, keep, doubt, revisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kaptain_warden.policies.expiry import Protection, decide, protect
from kaptain_warden.policies.loader import load_policy, load_policy_text
from kaptain_warden.policies.retention import RevisionVerdict
from kaptain_warden.policies.timestamps import format_time

P = "warden.kaptain.io"
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
POLICY = load_policy()


def managed(
    kind: str = "Secret",
    api_version: str = "v1",
    *,
    rule: str | None = "credentials-secrets",
    expires: datetime | str | None = None,
    created: datetime | str | None = None,
    after: str | None = None,
    keep: str | None = None,
    status: dict[str, Any] | None = None,
    namespace: str = "team-a",
    labels: dict[str, str] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    """A listed object carrying warden metadata as the webhook stamps it."""
    label_map = {f"{P}/managed": "true", f"{P}/owner": "alice"}
    if rule is not None:
        label_map[f"{P}/rule"] = rule
    label_map.update(labels or {})
    annotations = {f"{P}/owner": "alice@example.com"}
    for key, value in (("expires-at", expires), ("created-at", created)):
        if value is not None:
            annotations[f"{P}/{key}"] = format_time(value) if isinstance(value, datetime) else value
    if after is not None:
        annotations[f"{P}/ttl-after-finished"] = after
    if keep is not None:
        annotations[f"{P}/keep"] = keep
    metadata: dict[str, Any] = {
        "name": "obj",
        "namespace": namespace,
        "uid": "u-1",
        "labels": label_map,
        "annotations": annotations,
        "creationTimestamp": format_time(NOW - 10 * HOUR),
    }
    if deleting:
        metadata["deletionTimestamp"] = format_time(NOW - HOUR)
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
    if status is not None:
        obj["status"] = status
    return obj


def job(*, finished: datetime | None, condition: str = "Complete", **kw: Any) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if finished is not None:
        status["conditions"] = [
            {"type": condition, "status": "True", "lastTransitionTime": format_time(finished)}
        ]
    return managed("Job", "batch/v1", rule="build-jobs", status=status, **kw)


# -- expires-at ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires", "action"),
    [
        (NOW - HOUR, "delete"),
        (NOW, "delete"),  # the boundary instant counts as expired, like Knative's >=
        (NOW + timedelta(seconds=1), "keep"),
        (NOW + 24 * HOUR, "keep"),
    ],
)
def test_expires_at_in_the_past_is_due(expires, action):
    decision = decide(obj=managed(expires=expires), policy=POLICY, now=NOW)
    assert decision.action == action
    assert decision.expires_at == expires


def test_the_decision_moves_with_now():
    obj = managed(expires=NOW + 72 * HOUR)
    assert decide(obj=obj, policy=POLICY, now=NOW).action == "keep"
    assert decide(obj=obj, policy=POLICY, now=NOW + 71 * HOUR).action == "keep"
    at = decide(obj=obj, policy=POLICY, now=NOW + 72 * HOUR)
    assert (at.action, at.cause) == ("delete", "ttl")
    assert "expired" in at.reason


def test_the_rule_ttl_is_not_applied_to_an_object_that_does_not_carry_it():
    # Only what is written on the object counts: its owner saw that, not the policy.
    decision = decide(obj=managed(expires=None), policy=POLICY, now=NOW)
    assert decision.action == "keep"
    assert decision.expires_at is None
    assert "sets no expiry" in decision.reason


def test_now_must_be_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(obj=managed(), policy=POLICY, now=datetime(2024, 1, 1))


# -- never deleted -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        (managed(expires=NOW - HOUR, labels={f"{P}/managed": "false"}), "not managed"),
        (managed(expires=NOW - HOUR, namespace="kube-system"), "excluded"),
        (managed(expires=NOW - HOUR, namespace="kaptain-warden"), "excluded"),
        (managed(expires=NOW - HOUR, deleting=True), "already being deleted"),
        (managed(expires=NOW - HOUR, rule=None), "no warden.kaptain.io/rule label"),
        (managed(expires=NOW - HOUR, rule="gone-rule"), "not in the policy"),
        # A rule id that exists but does not govern the kind: the label is not ours to trust.
        (managed(expires=NOW - HOUR, rule="build-jobs"), "does not govern"),
    ],
)
def test_objects_outside_the_contract_are_never_deleted(obj, why):
    decision = decide(obj=obj, policy=POLICY, now=NOW)
    assert decision.action == "keep"
    assert why in decision.reason


def test_unmanaged_look_alike_without_the_label_is_kept():
    obj = managed(expires=NOW - HOUR)
    del obj["metadata"]["labels"][f"{P}/managed"]
    assert decide(obj=obj, policy=POLICY, now=NOW).action == "keep"


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        ("expires-at", "tomorrow"),
        ("expires-at", "2024-06-01 10:00:00"),  # no T, no zone: not RFC 3339
        ("ttl-after-finished", "1 hour"),
        ("created-at", "yesterday"),
    ],
)
def test_unreadable_timestamps_keep_the_object(annotation, value):
    kw: dict[str, Any] = {"expires": NOW - 24 * HOUR, "after": "1h"}
    kw[
        {"expires-at": "expires", "ttl-after-finished": "after", "created-at": "created"}[
            annotation
        ]
    ] = value
    obj = job(finished=NOW - 24 * HOUR, **kw)
    decision = decide(obj=obj, policy=POLICY, now=NOW)
    assert decision.action == "keep"
    assert f"unreadable {P}/{annotation}" in decision.reason


# -- keep ------------------------------------------------------------------------------------


def test_keep_is_honoured_where_the_rule_allows_it():
    decision = decide(obj=managed(expires=NOW - HOUR, keep="true"), policy=POLICY, now=NOW)
    assert decision.action == "keep"
    assert "allows it" in decision.reason
    assert decision.expires_at is None


def test_keep_is_ignored_where_the_rule_does_not_allow_it():
    obj = job(finished=NOW - 3 * HOUR, after="1h", keep="true")
    decision = decide(obj=obj, policy=POLICY, now=NOW)
    assert decision.action == "delete"
    assert "ignored" in decision.reason


@pytest.mark.parametrize("value", ["false", "yes", "True"])
def test_only_the_exact_value_true_keeps(value):
    decision = decide(obj=managed(expires=NOW - HOUR, keep=value), policy=POLICY, now=NOW)
    assert decision.action == "delete"


# -- ttl-after-finished --------------------------------------------------------------------------


def test_an_unfinished_job_never_expires_by_completion():
    decision = decide(obj=job(finished=None, after="1h"), policy=POLICY, now=NOW)
    assert decision.action == "keep"
    assert decision.expires_at is None
    assert "not finished" in decision.reason


@pytest.mark.parametrize("condition", ["Complete", "Failed"])
def test_a_finished_job_expires_ttl_after_its_finish(condition):
    finished = NOW - 90 * timedelta(minutes=1)
    obj = job(finished=finished, condition=condition, after="1h")
    decision = decide(obj=obj, policy=POLICY, now=NOW)
    assert (decision.action, decision.cause) == ("delete", "ttl-after-finished")
    assert decision.expires_at == finished + HOUR


def test_a_recently_finished_job_is_kept_until_its_deadline():
    obj = job(finished=NOW - 30 * timedelta(minutes=1), after="1h")
    decision = decide(obj=obj, policy=POLICY, now=NOW)
    assert decision.action == "keep"
    assert decision.expires_at == NOW + 30 * timedelta(minutes=1)


def test_a_job_with_only_a_non_final_condition_is_not_finished():
    obj = job(finished=NOW - 24 * HOUR, condition="SuccessCriteriaMet", after="1h")
    assert decide(obj=obj, policy=POLICY, now=NOW).action == "keep"


@pytest.mark.parametrize(
    ("kind", "api_version", "rule", "condition"),
    [
        ("TFJob", "kubeflow.org/v1", "training-jobs", "Succeeded"),
        ("PyTorchJob", "kubeflow.org/v1", "training-jobs", "Failed"),
        ("Experiment", "kubeflow.org/v1beta1", "katib-experiments", "Succeeded"),
    ],
)
def test_each_kind_reads_its_own_completion(kind, api_version, rule, condition):
    finished = NOW - 8 * 24 * HOUR
    status = {
        "conditions": [
            {"type": "Running", "status": "False", "lastTransitionTime": format_time(finished)},
            {"type": condition, "status": "True", "lastTransitionTime": format_time(finished)},
        ],
        "completionTime": format_time(finished),
    }
    obj = managed(kind, api_version, rule=rule, after="7d", status=status)
    assert decide(obj=obj, policy=POLICY, now=NOW).action == "delete"
    running = managed(
        kind,
        api_version,
        rule=rule,
        after="7d",
        status={"conditions": [{"type": "Running", "status": "True"}]},
    )
    assert decide(obj=running, policy=POLICY, now=NOW).action == "keep"


def test_the_completion_clock_never_starts_before_stamping():
    # Backfilled today, finished a year ago: the owner gets the full TTL from the stamp.
    obj = job(finished=NOW - 365 * 24 * HOUR, after="1h", created=NOW - 30 * timedelta(minutes=1))
    decision = decide(obj=obj, policy=POLICY, now=NOW)
    assert decision.action == "keep"
    assert decision.expires_at == NOW + 30 * timedelta(minutes=1)
    assert "clock starts at stamping" in decision.reason


def test_the_earliest_clock_that_ran_out_is_reported():
    obj = job(finished=NOW - 5 * HOUR, after="1h", expires=NOW - 2 * HOUR)
    decision = decide(obj=obj, policy=POLICY, now=NOW)
    assert decision.action == "delete"
    assert decision.expires_at == NOW - 4 * HOUR
    assert decision.cause == "ttl-after-finished"


def test_a_running_job_past_its_expires_at_is_due():
    obj = job(finished=None, after="1h", expires=NOW - HOUR)
    decision = decide(obj=obj, policy=POLICY, now=NOW)
    assert (decision.action, decision.cause) == ("delete", "ttl")


# -- revisions ---------------------------------------------------------------------------------


def revision(**kw: Any) -> dict[str, Any]:
    return managed("Revision", "serving.knative.dev/v1", rule="knative-revisions", **kw)


def verdict(
    action: str, reason: str, deletes_at: datetime | None = None, *, protected: bool = False
) -> RevisionVerdict:
    return RevisionVerdict("team-a", "obj", "u-1", action, reason, deletes_at, protected)  # type: ignore[arg-type]


def test_retention_delete_sends_a_revision_away():
    decision = decide(
        obj=revision(),
        policy=POLICY,
        now=NOW,
        retention=verdict("delete", "stale: created 3d ago", NOW - HOUR),
    )
    assert (decision.action, decision.cause) == ("delete", "retention")
    assert decision.expires_at == NOW - HOUR
    assert decision.reason.startswith("retention: stale")


def test_over_max_delete_has_no_known_expiry():
    decision = decide(
        obj=revision(),
        policy=POLICY,
        now=NOW,
        retention=verdict("delete", "over maxNonActive=10", NOW + 24 * HOUR),
    )
    assert decision.action == "delete"
    assert decision.expires_at is None


def test_a_revision_held_by_min_non_active_has_no_known_expiry():
    decision = decide(
        obj=revision(),
        policy=POLICY,
        now=NOW,
        retention=verdict("keep", "kept: within minNonActive=2", NOW - HOUR),
    )
    assert (decision.action, decision.expires_at) == ("keep", None)


def test_a_fresh_revision_reports_when_its_age_clock_runs_out():
    decision = decide(
        obj=revision(),
        policy=POLICY,
        now=NOW,
        retention=verdict("keep", "kept: created 1h ago, within retainSinceCreate=48h", NOW + HOUR),
    )
    assert (decision.action, decision.expires_at) == ("keep", NOW + HOUR)


@pytest.mark.parametrize(
    "reason",
    [
        "protected: latest ready revision of configuration cfg",
        'protected: annotation serving.knative.dev/no-gc="true"',
        "protected: named in an InferenceService status",
        "protected: routingState=active",
        "kept: unreadable timestamp: metadata.creationTimestamp=None",
    ],
)
def test_a_revision_knative_protects_outlives_its_ttl(reason):
    obj = revision(expires=NOW - 24 * HOUR)
    decision = decide(
        obj=obj, policy=POLICY, now=NOW, retention=verdict("keep", reason, protected=True)
    )
    assert (decision.action, decision.kept) == ("keep", True)
    # A delete a protection stops says what would have happened.
    assert decision.reason.startswith(f"{reason} (otherwise: expired")
    running = revision(expires=NOW + 24 * HOUR)
    decision = decide(
        obj=running, policy=POLICY, now=NOW, retention=verdict("keep", reason, protected=True)
    )
    assert (decision.action, decision.reason, decision.kept) == ("keep", reason, True)


def test_a_revision_retention_keeps_without_protection_still_expires_by_ttl():
    obj = revision(expires=NOW - 24 * HOUR)
    kept = verdict("keep", "kept: within minNonActive=2")
    assert decide(obj=obj, policy=POLICY, now=NOW, retention=kept).action == "delete"


def test_an_unprotected_revision_past_its_ttl_is_due():
    obj = revision(expires=NOW - 24 * HOUR)
    decision = decide(
        obj=obj,
        policy=POLICY,
        now=NOW,
        retention=verdict("keep", "kept: revision GC disabled (...)"),
    )
    assert (decision.action, decision.cause) == ("delete", "ttl")


def test_a_revision_without_a_plan_is_kept():
    obj = revision(expires=NOW - 24 * HOUR)
    assert decide(obj=obj, policy=POLICY, now=NOW).action == "keep"
    held = decide(
        obj=obj,
        policy=POLICY,
        now=NOW,
        protection=Protection("kept: configuration cfg could not be read"),
    )
    assert held.action == "keep"
    assert held.reason.startswith("kept: configuration cfg could not be read (otherwise: expired")


# -- hold, prefixes ----------------------------------------------------------------------------


def test_a_protection_turns_a_delete_into_a_keep_and_says_both():
    in_use = Protection("kept: in use by Pod/train")
    due = decide(obj=managed(expires=NOW - HOUR), policy=POLICY, now=NOW)
    held = protect(due, in_use)
    assert (held.action, held.kept) == ("keep", True)
    assert held.reason.startswith("kept: in use by Pod/train (otherwise: expired")
    # decide applies it the same way, after the checks that keep an object for other reasons.
    assert decide(obj=managed(expires=NOW - HOUR), policy=POLICY, now=NOW, protection=in_use) == (
        held
    )
    unmanaged = managed(expires=NOW - HOUR)
    unmanaged["metadata"]["labels"].pop("warden.kaptain.io/managed")
    assert decide(obj=unmanaged, policy=POLICY, now=NOW, protection=in_use).kept is False


def test_a_custom_prefix_is_read():
    policy = load_policy_text(
        """
apiVersion: warden.kaptain.io/v1alpha1
kind: WardenPolicy
settings: {metadataPrefix: cleanup.example.com}
rules:
  - id: s
    match: {kinds: [{apiVersion: v1, kind: Secret}]}
    ttl: 1h
"""
    )
    obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "namespace": "ns",
            "labels": {"cleanup.example.com/managed": "true", "cleanup.example.com/rule": "s"},
            "annotations": {"cleanup.example.com/expires-at": format_time(NOW - HOUR)},
        },
    }
    assert decide(obj=obj, policy=policy, now=NOW).action == "delete"
    assert decide(obj=managed(expires=NOW - HOUR), policy=policy, now=NOW).action == "keep"
