"""`sweep --dry-run --at`: the same pure decisions, asked at several instants."""

from datetime import UTC, datetime, timedelta

import pytest

from kaptain_warden.commands.sweep import _parse_at
from kaptain_warden.policies.expiry import decide
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.policies.retention import RetentionSettings, plan_revision_retention
from kaptain_warden.policies.timestamps import format_time

POLICY = load_policy()
CREATED = datetime(2026, 6, 5, 9, 0, tzinfo=UTC)  # a Friday morning
P = "warden.kaptain.io"


def stamped(kind, api_version, rule, annotations, status=None):
    obj = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": "x",
            "namespace": "team-a",
            "uid": "u",
            "creationTimestamp": format_time(CREATED),
            "labels": {f"{P}/managed": "true", f"{P}/rule": rule, f"{P}/owner": "alice"},
            "annotations": {
                f"{P}/owner": "alice",
                f"{P}/created-at": format_time(CREATED),
                **annotations,
            },
        },
    }
    if status is not None:
        obj["status"] = status
    return obj


SECRET = stamped(
    "Secret",
    "v1",
    "credentials-secrets",
    {f"{P}/ttl": "1d", f"{P}/expires-at": format_time(CREATED + timedelta(days=1))},
)
FINISHED_JOB = stamped(
    "Job",
    "batch/v1",
    "build-jobs",
    {f"{P}/ttl-after-finished": "1h"},
    {
        "conditions": [
            {
                "type": "Complete",
                "status": "True",
                "lastTransitionTime": format_time(CREATED + timedelta(hours=2)),
            }
        ]
    },
)
RUNNING_JOB = stamped(
    "Job", "batch/v1", "build-jobs", {f"{P}/ttl-after-finished": "1h"}, {"active": 1}
)


@pytest.mark.parametrize(
    ("obj", "hours_later", "action"),
    [
        (SECRET, 0, "keep"),
        (SECRET, 23, "keep"),
        (SECRET, 24, "delete"),  # the boundary instant counts as expired
        (SECRET, 72, "delete"),
        (FINISHED_JOB, 2, "keep"),
        (FINISHED_JOB, 3, "delete"),  # finished at +2h, ttl-after-finished 1h
        (RUNNING_JOB, 72, "keep"),  # not finished: the completion clock never starts
        (RUNNING_JOB, 24 * 365, "keep"),
    ],
)
def test_decisions_follow_the_evaluation_instant(obj, hours_later, action):
    decision = decide(obj=obj, policy=POLICY, now=CREATED + timedelta(hours=hours_later))
    assert decision.action == action


def revision(name, created_hours_ago, at):
    return {
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": name,
            "creationTimestamp": format_time(at - timedelta(hours=created_hours_ago)),
            "labels": {"serving.knative.dev/routingState": "reserve"},
        }
    }


def test_revision_retention_answer_changes_between_two_instants():
    settings = RetentionSettings(
        min_non_active=1,
        max_non_active=None,
        retain_since_create=timedelta(hours=48),
        retain_since_last_active=timedelta(hours=15),
    )
    base = CREATED
    revisions = [
        revision("m-00001", 40, base),
        revision("m-00002", 30, base),
        revision("m-00003", 1, base),
    ]

    def plan(at):
        verdicts = plan_revision_retention(
            revisions=revisions, latest_ready_revision="m-00003", settings=settings, now=at
        )
        return {v.name: v.action for v in verdicts}

    assert plan(base) == {"m-00001": "keep", "m-00002": "keep", "m-00003": "keep"}
    # 10 h later m-00001 is 50 h old and idle: stale; m-00002 (40 h) is held by its age.
    assert plan(base + timedelta(hours=10)) == {
        "m-00001": "delete",
        "m-00002": "keep",
        "m-00003": "keep",
    }
    # 20 h later both are stale, but minNonActive=1 holds the more recent one.
    assert plan(base + timedelta(hours=20)) == {
        "m-00001": "delete",
        "m-00002": "keep",
        "m-00003": "keep",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+72h", CREATED + timedelta(hours=72)),
        ("+1d12h", CREATED + timedelta(days=1, hours=12)),
        ("2026-06-08T08:00:00Z", datetime(2026, 6, 8, 8, 0, tzinfo=UTC)),
        ("2026-06-08T10:00:00+02:00", datetime(2026, 6, 8, 8, 0, tzinfo=UTC)),
    ],
)
def test_at_takes_an_instant_or_a_duration_from_now(text, expected):
    assert _parse_at(text, CREATED) == expected


@pytest.mark.parametrize(
    ("text", "fragment"), [("+7x", "not a duration"), ("monday", "RFC 3339"), ("+0s", "zero")]
)
def test_unusable_at_values_are_refused_with_a_reason(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        _parse_at(text, CREATED)
