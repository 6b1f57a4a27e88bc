"""expireWhenCreatorGone: due once the creator Pod has been gone for the rule's duration."""

from datetime import UTC, datetime, timedelta

import pytest

from kaptain_warden.install.rbac import sweeper_cluster_rules
from kaptain_warden.policies.expiry import creator_to_check, decide
from kaptain_warden.policies.loader import PolicyError, load_policy, load_policy_text
from kaptain_warden.sweeper.creators import LivePods

POLICY = load_policy_text(
    """
apiVersion: warden.kaptain.io/v1alpha1
kind: WardenPolicy
rules:
  - id: secrets
    match: {kinds: [{apiVersion: v1, kind: Secret}]}
    ttl: 1d
    warnBefore: "0"
    expireWhenCreatorGone: 1h
  - id: training
    match: {kinds: [{apiVersion: kubeflow.org/v1, kind: TFJob}]}
    ttl: 1d
    warnBefore: "0"
"""
)
P = "warden.kaptain.io"
UID = "6f1c2f4e-3f7a-4b8e-9c1d-0a1b2c3d4e5f"
CREATED = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
GONE = CREATED + timedelta(hours=2)


def obj(rule="secrets", kind="Secret", api_version="v1", **annotations):
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": "s3-creds",
            "namespace": "team-a",
            "labels": {f"{P}/managed": "true", f"{P}/rule": rule},
            "annotations": {
                f"{P}/created-at": "2026-05-01T12:00:00Z",
                f"{P}/expires-at": "2026-05-02T12:00:00Z",
                f"{P}/created-by-pod": "alice-nb-0",
                f"{P}/created-by-pod-uid": UID,
                **{f"{P}/{k.replace('_', '-')}": v for k, v in annotations.items()},
            },
        },
    }


def test_a_creator_seen_gone_now_starts_the_clock_at_that_instant():
    decision = decide(
        obj=obj(), policy=POLICY, now=GONE + timedelta(minutes=30), creator_missing_since=GONE
    )
    assert decision.action == "keep"
    assert decision.expires_at == GONE + timedelta(hours=1)
    assert decision.cause == "creator-gone"
    assert "creator Pod alice-nb-0 gone since 2026-05-01T14:00:00Z" in decision.reason


def test_the_recorded_instant_makes_it_due_after_the_grace():
    recorded = obj(creator_gone_at="2026-05-01T14:00:00Z")
    before = decide(obj=recorded, policy=POLICY, now=GONE + timedelta(minutes=59))
    assert before.action == "keep"
    after = decide(obj=recorded, policy=POLICY, now=GONE + timedelta(hours=1))
    assert after.action == "delete"
    assert after.cause == "creator-gone"
    assert after.expires_at == GONE + timedelta(hours=1)
    assert "creator Pod alice-nb-0 gone since 2026-05-01T14:00:00Z" in after.reason
    # The recorded first sighting wins over a later one.
    assert (
        decide(
            obj=recorded,
            policy=POLICY,
            now=GONE + timedelta(hours=1),
            creator_missing_since=GONE + timedelta(minutes=50),
        ).action
        == "delete"
    )


def test_a_creator_not_known_gone_runs_no_clock():
    decision = decide(obj=obj(), policy=POLICY, now=GONE + timedelta(hours=5))
    assert decision.action == "keep"
    assert decision.expires_at == datetime(2026, 5, 2, 12, 0, tzinfo=UTC)
    assert "creator" not in decision.reason


def test_rules_without_it_and_objects_without_a_creator_ignore_it():
    tfjob = obj("training", "TFJob", "kubeflow.org/v1", creator_gone_at="2026-05-01T14:00:00Z")
    assert decide(obj=tfjob, policy=POLICY, now=GONE + timedelta(hours=5)).action == "keep"
    assert creator_to_check(tfjob, POLICY) is None
    anonymous = obj(creator_gone_at="2026-05-01T14:00:00Z")
    del anonymous["metadata"]["annotations"][f"{P}/created-by-pod-uid"]
    assert decide(obj=anonymous, policy=POLICY, now=GONE + timedelta(hours=5)).action == "keep"
    assert creator_to_check(anonymous, POLICY) is None


def test_an_unreadable_record_keeps_the_object():
    decision = decide(obj=obj(creator_gone_at="yesterday"), policy=POLICY, now=GONE)
    assert decision.action == "keep" and decision.kept
    assert "unreadable" in decision.reason


def test_only_objects_without_a_record_need_a_look():
    assert creator_to_check(obj(), POLICY) == UID
    assert creator_to_check(obj(creator_gone_at="2026-05-01T14:00:00Z"), POLICY) is None


def test_a_pod_of_the_same_name_with_another_uid_is_gone_and_unread_is_present():
    live = LivePods(uids={"team-a": frozenset({"other-uid"})}, unreadable={"team-b": "403"})
    assert live.missing("team-a", UID)
    assert not LivePods(uids={"team-a": frozenset({UID})}).missing("team-a", UID)
    assert not live.missing("team-b", UID)


def test_the_loader_reads_and_checks_it():
    assert POLICY.rule_by_id("secrets").expire_when_creator_gone == timedelta(hours=1)
    assert POLICY.rule_by_id("training").expire_when_creator_gone is None
    with pytest.raises(PolicyError, match="expireWhenCreatorGone"):
        load_policy_text(
            """
apiVersion: warden.kaptain.io/v1alpha1
kind: WardenPolicy
rules:
  - id: secrets
    match: {kinds: [{apiVersion: v1, kind: Secret}]}
    expireWhenCreatorGone: soon
"""
        )


def test_the_default_policy_expires_build_objects_not_training_or_serving():
    rules = {r.id: r.expire_when_creator_gone for r in load_policy().rules}
    assert rules["credentials-secrets"] == timedelta(hours=1)
    assert rules["build-jobs"] == timedelta(hours=1)
    for other in ("training-jobs", "katib-experiments", "inference-services"):
        assert rules[other] is None


def test_the_sweeper_may_list_pods_and_record_on_those_kinds():
    rules = sweeper_cluster_rules(POLICY)
    core = [r for r in rules if r["apiGroups"] == [""]]
    assert any("pods" in r["resources"] and "list" in r["verbs"] for r in core)
    assert any("secrets" in r["resources"] and "patch" in r["verbs"] for r in core)
    training = [r for r in rules if r["apiGroups"] == ["kubeflow.org"]]
    assert all("patch" not in r["verbs"] for r in training)
