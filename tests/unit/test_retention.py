"""Tier 1: Knative revision retention, checked against upstream's cases and a literal model."""

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaptain_warden.policies.retention import (
    RetentionSettings,
    RevisionVerdict,
    group_by_configuration,
    inference_service_revisions,
    plan_revision_retention,
)
from kaptain_warden.policies.timestamps import format_time

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Upstream's fake revisions have a zero CreationTimestamp (year 1): "created long ago".
LONG_AGO = 400 * DAY

_UNSET = object()


def rev(
    name: str,
    *,
    created_ago: timedelta = LONG_AGO,
    state: str | None = "reserve",
    modified_ago: timedelta | None = None,
    no_gc: str | None = None,
    configuration: str = "cfg",
    namespace: str = "ns",
    uid: str | None = None,
    raw_created: object = _UNSET,
    raw_modified: str | None = None,
) -> dict[str, Any]:
    """A Revision dict as the API returns it (only the metadata retention reads)."""
    labels = {"serving.knative.dev/configuration": configuration}
    if state is not None:
        labels["serving.knative.dev/routingState"] = state
    annotations: dict[str, str] = {}
    if modified_ago is not None:
        annotations["serving.knative.dev/routingStateModified"] = format_time(NOW - modified_ago)
    if raw_modified is not None:
        annotations["serving.knative.dev/routingStateModified"] = raw_modified
    if no_gc is not None:
        annotations["serving.knative.dev/no-gc"] = no_gc
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Revision",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or f"uid-{name}",
            "creationTimestamp": (
                format_time(NOW - created_ago) if raw_created is _UNSET else raw_created
            ),
            "labels": labels,
            "annotations": annotations,
        },
    }


def gc(
    *,
    min_: int | None = None,
    max_: int | None = None,
    create: timedelta | None = None,
    active: timedelta | None = None,
) -> RetentionSettings:
    return RetentionSettings(
        min_non_active=min_,
        max_non_active=max_,
        retain_since_create=create,
        retain_since_last_active=active,
    )


def plan(
    revisions: Sequence[Mapping[str, Any]],
    settings_: RetentionSettings,
    *,
    latest_ready: str | None = None,
    protected: Collection[str] = (),
    now: datetime = NOW,
) -> list[RevisionVerdict]:
    return plan_revision_retention(
        revisions=revisions,
        latest_ready_revision=latest_ready,
        protected_names=protected,
        settings=settings_,
        now=now,
    )


def deleted(verdicts: Sequence[RevisionVerdict]) -> set[str]:
    return {v.name for v in verdicts if v.action == "delete"}


def by_name(verdicts: Sequence[RevisionVerdict]) -> dict[str, RevisionVerdict]:
    return {v.name: v for v in verdicts}


# ---------------------------------------------------------------------------------------------
# Upstream's cases (knative/serving pkg/reconciler/gc gc_test.go, the v2 collector), restated.
# Their clock: old/older/oldest = 11/12/13 minutes ago; their revisions are created at the zero
# time, which we write as LONG_AGO. WithRoutingState(reserve) stamps routingStateModified, which
# the cases then override with WithRoutingStateModified.
# ---------------------------------------------------------------------------------------------
OLD, OLDER, OLDEST = 11 * MIN, 12 * MIN, 13 * MIN
UPSTREAM_MIN = gc(min_=1, max_=None, create=5 * MIN, active=5 * MIN)  # TestCollectMin
UPSTREAM_MAX = gc(min_=1, max_=2, create=HOUR, active=HOUR)  # TestCollectMax
SETTINGS_REVS = [  # TestCollectSettings' fixed revisions; latest ready is 5556
    rev("5554", modified_ago=OLDEST),
    rev("5555", modified_ago=OLDER),
    rev("5556", state="active", modified_ago=OLD),
]

UPSTREAM_CASES = [
    # TestCollectMin "too few revisions"
    pytest.param(
        [rev("5556", state="active", modified_ago=OLD)],
        "5556",
        UPSTREAM_MIN,
        set(),
        id="upstream min: too few revisions",
    ),
    # TestCollectMin "delete oldest, keep one recent, one active"
    pytest.param(
        [
            rev("5554", modified_ago=OLDEST),
            rev("5555", modified_ago=OLDER),
            rev("5556", state="active", modified_ago=OLD),
        ],
        "5556",
        UPSTREAM_MIN,
        {"5554"},
        id="upstream min: delete oldest, keep one recent, one active",
    ),
    # TestCollectMin "no latest ready, one active"
    pytest.param(
        [
            rev("5554", modified_ago=OLDEST),
            rev("5555", modified_ago=OLDER),
            rev("5556", state="active", modified_ago=OLD),
        ],
        None,
        UPSTREAM_MIN,
        {"5554"},
        id="upstream min: no latest ready, one active",
    ),
    # TestCollectMin "keep oldest when none Reserved": pending and unset count as active.
    pytest.param(
        [
            rev("5554", state="pending", created_ago=OLDEST),
            rev("5555", state="", created_ago=OLDER),
            rev("5556", state="active", created_ago=OLD),
        ],
        "5556",
        UPSTREAM_MIN,
        set(),
        id="upstream min: keep oldest when none reserved",
    ),
    # TestCollectMin "none stale"
    pytest.param(
        [
            rev("5554", modified_ago=timedelta(0)),
            rev("5555", modified_ago=timedelta(0)),
            rev("5556", modified_ago=timedelta(0)),
        ],
        None,
        UPSTREAM_MIN,
        set(),
        id="upstream min: none stale",
    ),
    # TestCollectMin "keep oldest because of the preserve annotation"
    pytest.param(
        [
            rev("5554", modified_ago=OLDEST, no_gc="true"),
            rev("5555", modified_ago=OLDER),
            rev("5556", modified_ago=OLD),
        ],
        None,
        UPSTREAM_MIN,
        {"5555"},
        id="upstream min: keep oldest because of the preserve annotation",
    ),
    # TestCollectMax "at max"
    pytest.param(
        [
            rev("5554", modified_ago=OLDER),
            rev("5555", modified_ago=OLDER),
            rev("5556", state="active", modified_ago=OLD),
        ],
        "5556",
        UPSTREAM_MAX,
        set(),
        id="upstream max: at max",
    ),
    # TestCollectMax "delete oldest, keep three max"
    pytest.param(
        [
            rev("5553", modified_ago=OLDEST),
            rev("5554", modified_ago=OLDER),
            rev("5555", modified_ago=OLDER),
            rev("5556", state="active", modified_ago=OLD),
        ],
        "5556",
        UPSTREAM_MAX,
        {"5553"},
        id="upstream max: delete oldest, keep three max",
    ),
    # TestCollectMax "over max, all active"
    pytest.param(
        [rev(n, state="active") for n in ("5553", "5554", "5555", "5556")],
        "5556",
        UPSTREAM_MAX,
        set(),
        id="upstream max: over max, all active",
    ),
    # TestCollectSettings "all disabled"
    pytest.param(
        SETTINGS_REVS,
        "5556",
        gc(min_=1, max_=None, create=None, active=None),
        set(),
        id="upstream settings: all disabled",
    ),
    # TestCollectSettings "staleness disabled"
    pytest.param(
        SETTINGS_REVS,
        "5556",
        gc(min_=0, max_=1, create=None, active=None),
        {"5554"},
        id="upstream settings: staleness disabled",
    ),
    # TestCollectSettings "max disabled"
    pytest.param(
        SETTINGS_REVS,
        "5556",
        gc(min_=1, max_=None, create=None, active=MIN),
        {"5554"},
        id="upstream settings: max disabled",
    ),
    # TestIsRevisionStale (create 5m, active 5m), as a plan over one reserve revision, min 0.
    # "stale create time"
    pytest.param(
        [rev("myrev", created_ago=10 * MIN)],
        None,
        gc(min_=0, create=5 * MIN, active=5 * MIN),
        {"myrev"},
        id="upstream isRevisionStale: stale create time",
    ),
    # "fresh create time"
    pytest.param(
        [rev("myrev", created_ago=timedelta(0))],
        None,
        gc(min_=0, create=5 * MIN, active=5 * MIN),
        set(),
        id="upstream isRevisionStale: fresh create time",
    ),
    # "stale revisionStateModified"
    pytest.param(
        [rev("myrev", created_ago=10 * MIN, modified_ago=10 * MIN)],
        None,
        gc(min_=0, create=5 * MIN, active=5 * MIN),
        {"myrev"},
        id="upstream isRevisionStale: stale routingStateModified",
    ),
    # "fresh revisionStateModified"
    pytest.param(
        [rev("myrev", created_ago=10 * MIN, modified_ago=timedelta(0))],
        None,
        gc(min_=0, create=5 * MIN, active=5 * MIN),
        set(),
        id="upstream isRevisionStale: fresh routingStateModified",
    ),
    # The v1 collector's "keep LatestReadyRevision": latest ready is old and newer revisions are
    # not ready; here even its reserve label does not expose it.
    pytest.param(
        [
            rev("5554", modified_ago=OLDEST),
            rev("5555", modified_ago=OLDER),
            rev("5556", modified_ago=OLD),
        ],
        "5554",
        gc(min_=0, create=5 * MIN, active=5 * MIN),
        {"5555", "5556"},
        id="upstream v1: keep latest ready revision while newer are not ready",
    ),
]
# Not ported: the v1 collector's lastPinned cases; lastPinned no longer exists upstream.


@pytest.mark.parametrize(("revisions", "latest_ready", "settings_", "expected"), UPSTREAM_CASES)
def test_upstream_cases(
    revisions: list[dict[str, Any]],
    latest_ready: str | None,
    settings_: RetentionSettings,
    expected: set[str],
) -> None:
    verdicts = plan(revisions, settings_, latest_ready=latest_ready)
    assert [v.name for v in verdicts] == [r["metadata"]["name"] for r in revisions]
    assert deleted(verdicts) == expected


# ---------------------------------------------------------------------------------------------
# Our table: what the sweeper relies on.
# ---------------------------------------------------------------------------------------------
DEFAULTS = gc(min_=2, max_=10, create=48 * HOUR, active=15 * HOUR)

OUR_CASES = [
    pytest.param(
        [
            rev("r-00001", state="active", created_ago=90 * DAY, modified_ago=90 * DAY),
            rev("r-00002", created_ago=80 * DAY, modified_ago=80 * DAY),
            rev("r-00003", created_ago=70 * DAY, modified_ago=70 * DAY),
            rev("r-00004", created_ago=60 * DAY, modified_ago=60 * DAY),
        ],
        None,
        (),
        gc(min_=0, create=HOUR, active=HOUR),
        {"r-00002", "r-00003", "r-00004"},
        {"r-00001": "protected: routingState=active"},
        id="routed old revision is kept",
    ),
    pytest.param(
        [
            rev("r-00001", state="pending", created_ago=90 * DAY),
            rev("r-00002", state=None, created_ago=90 * DAY),
            rev("r-00003", state="Reserve", created_ago=90 * DAY),  # case matters upstream
            rev("r-00004", state="retired", created_ago=90 * DAY),
        ],
        None,
        (),
        gc(min_=0, max_=0, create=HOUR, active=HOUR),
        set(),
        {
            "r-00001": "protected: routingState=pending",
            "r-00002": "protected: routingState unset (Knative treats it as active)",
            "r-00003": "protected: routingState='Reserve' (only 'reserve' is collectable)",
        },
        id="pending, unset and unknown routing states are active",
    ),
    pytest.param(
        [
            rev("r-00001", created_ago=10 * DAY, modified_ago=9 * DAY),
            rev("r-00002", state="pending", created_ago=HOUR),  # newest, not ready yet
        ],
        "r-00001",
        (),
        gc(min_=0, max_=0, create=HOUR, active=HOUR),
        set(),
        {"r-00001": "protected: latest ready revision of configuration cfg"},
        id="latest ready kept while a newer one is not ready",
    ),
    pytest.param(
        [
            rev(f"r-{i:05d}", created_ago=(100 - i) * DAY, modified_ago=(90 - i) * DAY)
            for i in range(1, 6)
        ],
        None,
        (),
        gc(min_=2, max_=None, create=HOUR, active=HOUR),
        {"r-00001", "r-00002", "r-00003"},
        {"r-00004": "kept: within minNonActive=2", "r-00005": "kept: within minNonActive=2"},
        id="minNonActive respected even when all are old",
    ),
    pytest.param(
        [
            rev(f"r-{i:05d}", created_ago=(10 - i) * HOUR, modified_ago=(10 - i) * HOUR)
            for i in range(1, 7)
        ],
        None,
        (),
        gc(min_=1, max_=3, create=48 * HOUR, active=15 * HOUR),
        {"r-00001", "r-00002", "r-00003"},
        {
            "r-00001": "over maxNonActive=3",
            "r-00004": "kept: created 6h ago, within retainSinceCreate=2d; "
            "last active 6h ago, within retainSinceLastActive=15h",
        },
        id="maxNonActive trims the oldest first",
    ),
    pytest.param(
        [
            rev("r-00003", created_ago=3 * DAY, modified_ago=2 * DAY),
            rev("r-00001", created_ago=3 * DAY, modified_ago=2 * DAY),
            rev("r-00002", created_ago=3 * DAY, modified_ago=2 * DAY),
        ],
        None,
        (),
        gc(min_=0, max_=1, create=None, active=None),
        {"r-00001", "r-00002"},
        {"r-00003": "kept: within maxNonActive=1"},
        id="ties on timestamps: lower name goes first",
    ),
    pytest.param(
        [
            rev("r-00001", created_ago=3 * DAY, modified_ago=2 * DAY),
            rev("r-00002", created_ago=4 * DAY, modified_ago=2 * DAY),
        ],
        None,
        (),
        gc(min_=0, max_=1, create=None, active=None),
        {"r-00002"},
        {"r-00001": "kept: within maxNonActive=1"},
        id="ties on routingStateModified: older creation goes first, before name",
    ),
    pytest.param(
        [
            rev("r-00001", created_ago=90 * DAY, modified_ago=90 * DAY, no_gc="true"),
            rev("r-00002", created_ago=90 * DAY, modified_ago=90 * DAY, no_gc="TRUE"),
            rev("r-00003", created_ago=90 * DAY, modified_ago=90 * DAY, no_gc="false"),
            rev("r-00004", created_ago=90 * DAY, modified_ago=90 * DAY, no_gc="yes"),
        ],
        None,
        (),
        gc(min_=0, max_=0, create=HOUR, active=HOUR),
        {"r-00003", "r-00004"},
        {"r-00001": 'protected: annotation serving.knative.dev/no-gc="true"'},
        id="no-gc kept (case-insensitive true only)",
    ),
    pytest.param(
        [
            rev("r-00001", created_ago=9 * DAY, modified_ago=8 * DAY),
            rev("r-00002", created_ago=7 * DAY, modified_ago=6 * DAY),
            rev("r-00003", created_ago=HOUR, modified_ago=HOUR),
            rev("r-00004", created_ago=HOUR, modified_ago=HOUR),
        ],
        None,
        (),
        gc(min_=2, max_=None, create=48 * HOUR, active=15 * HOUR),
        {"r-00001", "r-00002"},
        {},
        id="fresh revisions count towards minNonActive (docs: not the N newest)",
    ),
    pytest.param(
        [rev(f"r-{i:05d}", created_ago=90 * DAY, modified_ago=(90 - i) * DAY) for i in range(1, 5)],
        None,
        (),
        gc(min_=None, max_=None, create=HOUR, active=HOUR),
        {"r-00001", "r-00002", "r-00003", "r-00004"},
        {},
        id="minNonActive disabled is zero",
    ),
    pytest.param(
        [rev(f"r-{i:05d}", created_ago=HOUR, modified_ago=HOUR) for i in range(1, 30)],
        None,
        (),
        gc(min_=0, max_=None, create=48 * HOUR, active=15 * HOUR),
        set(),
        {},
        id="maxNonActive disabled: fresh revisions pile up",
    ),
    pytest.param(
        [
            rev("r-00001", created_ago=HOUR, modified_ago=30 * HOUR),  # (clock skew, by hand)
            rev("r-00002", created_ago=90 * DAY, modified_ago=HOUR),
        ],
        None,
        (),
        gc(min_=0, max_=None, create=None, active=15 * HOUR),
        {"r-00001"},
        {"r-00002": "kept: last active 1h ago, within retainSinceLastActive=15h"},
        id="retainSinceCreate disabled: idleness alone decides",
    ),
    pytest.param(
        [
            rev("r-00001", created_ago=90 * DAY, modified_ago=HOUR),
            rev("r-00002", created_ago=HOUR, modified_ago=HOUR),
        ],
        None,
        (),
        gc(min_=0, max_=None, create=48 * HOUR, active=None),
        {"r-00001"},
        {"r-00002": "kept: created 1h ago, within retainSinceCreate=2d"},
        id="retainSinceLastActive disabled: age alone decides",
    ),
    pytest.param(
        [rev(f"r-{i:05d}", created_ago=90 * DAY, modified_ago=90 * DAY) for i in range(1, 5)],
        None,
        (),
        gc(min_=0, max_=None, create=None, active=None),
        set(),
        {
            "r-00001": "kept: revision GC disabled (maxNonActive, retainSinceCreate and "
            "retainSinceLastActive are all disabled)"
        },
        id="everything disabled: nothing goes",
    ),
    pytest.param(
        [
            rev("pred-00001", created_ago=30 * DAY, modified_ago=20 * DAY),
            rev("pred-00002", created_ago=20 * DAY, modified_ago=10 * DAY),
            rev("pred-00003", created_ago=10 * DAY, modified_ago=5 * DAY),
            rev("pred-00004", state="active", created_ago=5 * DAY, modified_ago=5 * DAY),
        ],
        "pred-00004",
        frozenset({"pred-00002", "pred-00004"}),
        gc(min_=0, max_=0, create=HOUR, active=HOUR),
        {"pred-00001", "pred-00003"},
        {"pred-00002": "protected: named in an InferenceService status"},
        id="InferenceService revisions protected",
    ),
    pytest.param(
        [
            # Created long ago but routed away from only an hour ago: not idle.
            rev("r-00001", created_ago=90 * DAY, modified_ago=HOUR),
            # Created recently, and its routingStateModified says long idle: stale.
            rev("r-00002", created_ago=3 * DAY, modified_ago=2 * DAY),
        ],
        None,
        (),
        gc(min_=0, create=48 * HOUR, active=15 * HOUR),
        {"r-00002"},
        {"r-00001": "kept: last active 1h ago, within retainSinceLastActive=15h"},
        id="routingStateModified preferred over creationTimestamp",
    ),
    pytest.param(
        [
            rev("r-00001", raw_created="last tuesday"),
            rev("r-00002", raw_created=None),
            rev("r-00003", created_ago=90 * DAY, raw_modified="2024-13-01T00:00:00Z"),
            rev("r-00004", created_ago=90 * DAY, modified_ago=90 * DAY),
        ],
        None,
        (),
        gc(min_=0, max_=0, create=HOUR, active=HOUR),
        {"r-00004"},
        {
            "r-00001": "kept: unreadable timestamp: metadata.creationTimestamp='last tuesday'",
            "r-00002": "kept: unreadable timestamp: metadata.creationTimestamp=None",
            "r-00003": "kept: unreadable timestamp: serving.knative.dev/routingStateModified="
            "'2024-13-01T00:00:00Z'",
        },
        id="malformed timestamps kept",
    ),
    pytest.param(
        [
            rev("r-00001", raw_created="garbage"),
            rev("r-00002", created_ago=90 * DAY, modified_ago=90 * DAY),
        ],
        None,
        (),
        gc(min_=1, max_=1, create=HOUR, active=HOUR),
        set(),
        {"r-00002": "kept: within minNonActive=1"},
        id="malformed timestamps do not count towards minNonActive",
    ),
    pytest.param(
        [
            rev("r-00001", created_ago=48 * HOUR, modified_ago=15 * HOUR),
            rev("r-00002", created_ago=48 * HOUR - timedelta(seconds=1), modified_ago=15 * HOUR),
            rev("r-00003", created_ago=48 * HOUR, modified_ago=15 * HOUR - timedelta(seconds=1)),
        ],
        None,
        (),
        gc(min_=0, create=48 * HOUR, active=15 * HOUR),
        {"r-00001"},
        {},
        id="exactly at the retention boundary is stale (>=, like Go's !(since < d))",
    ),
    pytest.param(
        [rev("r-00001", created_ago=-HOUR, modified_ago=-HOUR)],
        None,
        (),
        gc(min_=0, create=48 * HOUR, active=15 * HOUR),
        set(),
        {
            "r-00001": "kept: created 1h in the future, within retainSinceCreate=2d; "
            "last active 1h in the future, within retainSinceLastActive=15h"
        },
        id="timestamps in the future (clock skew) are fresh",
    ),
    pytest.param(
        [
            {"metadata": {"namespace": "ns", "uid": "u"}},
            {"kind": "Revision"},
            rev("r-00002", created_ago=90 * DAY, modified_ago=90 * DAY),
        ],
        None,
        (),
        gc(min_=0, max_=0, create=HOUR, active=HOUR),
        {"r-00002"},
        {"": "kept: malformed revision (no metadata)"},
        id="malformed revisions are kept",
    ),
]


@pytest.mark.parametrize(
    ("revisions", "latest_ready", "protected", "settings_", "expected", "reasons"), OUR_CASES
)
def test_retention_table(
    revisions: list[dict[str, Any]],
    latest_ready: str | None,
    protected: Collection[str],
    settings_: RetentionSettings,
    expected: set[str],
    reasons: dict[str, str],
) -> None:
    verdicts = plan(revisions, settings_, latest_ready=latest_ready, protected=protected)
    assert len(verdicts) == len(revisions)
    assert deleted(verdicts) == expected
    named = by_name(verdicts)
    for name, reason in reasons.items():
        assert named[name].reason == reason


def test_ties_break_the_same_way_whatever_the_input_order() -> None:
    revisions = [
        rev(f"r-{i:05d}", created_ago=3 * DAY, modified_ago=2 * DAY, uid=f"u{i % 3}")
        for i in range(1, 9)
    ]
    expected = {"r-00001", "r-00002", "r-00003", "r-00004", "r-00005"}
    shuffler = random.Random(7)
    for _ in range(20):
        shuffled = list(revisions)
        shuffler.shuffle(shuffled)
        verdicts = plan(shuffled, gc(min_=0, max_=3))
        assert deleted(verdicts) == expected
        assert [v.name for v in verdicts] == [r["metadata"]["name"] for r in shuffled]


def test_ties_on_timestamps_and_name_uid_decides() -> None:
    # Two objects with one name only happen across a delete/recreate race; still deterministic.
    revisions = [
        rev("r-00001", created_ago=4 * DAY, modified_ago=2 * DAY, uid="b"),
        rev("r-00001", created_ago=4 * DAY, modified_ago=2 * DAY, uid="a"),
    ]
    verdicts = plan(revisions, gc(min_=0, max_=1))
    assert [(v.uid, v.action) for v in verdicts] == [("b", "keep"), ("a", "delete")]


def test_verdict_identity_fields_come_from_the_revision() -> None:
    revision = rev("r-00001", namespace="team-a", uid="5f0c", created_ago=90 * DAY)
    (verdict,) = plan([revision], gc(min_=0, max_=0))
    assert verdict == RevisionVerdict(
        namespace="team-a",
        name="r-00001",
        uid="5f0c",
        action="delete",
        reason="over maxNonActive=0",
        deletes_at=None,
    )


def test_stale_reason_names_both_ages() -> None:
    revision = rev("r-00001", created_ago=3 * DAY + 4 * HOUR, modified_ago=20 * HOUR + 5 * MIN)
    (verdict,) = plan([revision], gc(min_=0, create=48 * HOUR, active=15 * HOUR))
    assert verdict.action == "delete"
    assert verdict.reason == "stale: created 3d4h ago, last active 20h5m ago"


@pytest.mark.parametrize(
    ("settings_", "expected"),
    [
        pytest.param(
            gc(min_=5, create=48 * HOUR, active=15 * HOUR),
            NOW + 14 * HOUR,  # modified + 15h is later than created + 48h (= NOW)
            id="both rules: the later deadline",
        ),
        pytest.param(
            gc(min_=5, create=None, active=15 * HOUR), NOW + 14 * HOUR, id="idle rule only"
        ),
        pytest.param(gc(min_=5, create=48 * HOUR, active=None), NOW, id="age rule only (due now)"),
        pytest.param(gc(min_=5, max_=9, create=None, active=None), None, id="age rules disabled"),
    ],
)
def test_deletes_at_is_the_age_rules_deadline(
    settings_: RetentionSettings, expected: datetime | None
) -> None:
    revision = rev("r-00001", created_ago=2 * DAY, modified_ago=HOUR)
    (verdict,) = plan([revision], settings_)
    assert verdict.action == "keep"
    assert verdict.deletes_at == expected


def test_deletes_at_is_none_when_protected_or_unreadable() -> None:
    revisions = [
        rev("r-00001", state="active"),
        rev("r-00002", no_gc="true"),
        rev("r-00003", raw_created="?"),
        rev("r-00004"),
        rev("r-00005", created_ago=HOUR),
    ]
    verdicts = by_name(plan(revisions, DEFAULTS, latest_ready="r-00004", protected={"r-00005"}))
    assert {name: v.deletes_at for name, v in verdicts.items()} == dict.fromkeys(verdicts)
    assert all(v.action == "keep" for v in verdicts.values())


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan([rev("r-00001")], DEFAULTS, now=datetime(2024, 6, 1, 12, 0))


def test_empty_input() -> None:
    assert plan([], DEFAULTS) == []


# ---------------------------------------------------------------------------------------------
# Settings validation.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param(
            {"min_": 3, "max_": 2},
            r"min_non_active \(3\) must be <= max_non_active \(2\)",
            id="min > max",
        ),
        pytest.param({"min_": -1}, "min_non_active must be >= 0", id="negative min"),
        pytest.param({"max_": -1}, "max_non_active must be >= 0", id="negative max (use None)"),
        pytest.param(
            {"create": -HOUR}, "retain_since_create must not be negative", id="negative create"
        ),
        pytest.param(
            {"active": -HOUR}, "retain_since_last_active must not be negative", id="negative active"
        ),
        pytest.param({"min_": True}, "min_non_active must be an integer", id="bool is not a count"),
        pytest.param({"max_": 2.5}, "max_non_active must be an integer", id="float is not a count"),
        pytest.param(
            {"create": 3600},
            "retain_since_create must be a timedelta",
            id="seconds are not a timedelta",
        ),
    ],
)
def test_settings_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gc(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"min_": 2, "max_": 2}, id="min == max"),
        pytest.param({"min_": 5, "max_": None}, id="max disabled"),
        pytest.param({"min_": None, "max_": 0}, id="min disabled, max 0"),
        pytest.param({"create": timedelta(0), "active": timedelta(0)}, id="zero durations"),
    ],
)
def test_settings_accepted(kwargs: dict[str, Any]) -> None:
    gc(**kwargs)


def test_settings_are_frozen() -> None:
    s = DEFAULTS
    with pytest.raises(AttributeError):
        s.min_non_active = 3  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# InferenceService status and grouping.
# ---------------------------------------------------------------------------------------------
def test_inference_service_revisions_kserve_v1beta1() -> None:
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "status": {
            "components": {
                "predictor": {
                    "latestCreatedRevision": "m-predictor-00005",
                    "latestReadyRevision": "m-predictor-00004",
                    "latestRolledoutRevision": "m-predictor-00003",
                    "previousRolledoutRevision": "m-predictor-00002",
                    "traffic": [
                        {"revisionName": "m-predictor-00004", "percent": 10, "tag": "latest"},
                        {"revisionName": "m-predictor-00001", "percent": 90, "tag": "prev"},
                        {"latestRevision": True, "percent": 0},
                    ],
                },
                "transformer": {"latestReadyRevision": "m-transformer-00001"},
                "explainer": "not a map",
            }
        },
    }
    assert inference_service_revisions(isvc) == {
        "m-predictor-00001",
        "m-predictor-00002",
        "m-predictor-00003",
        "m-predictor-00004",
        "m-predictor-00005",
        "m-transformer-00001",
    }


def test_inference_service_revisions_kfserving_shapes() -> None:
    v1beta1 = {
        "apiVersion": "serving.kubeflow.org/v1beta1",
        "status": {
            "components": {
                "predictor": {
                    "latestReadyRevision": "m-predictor-default-00002",
                    "previousRolledoutRevision": "m-predictor-default-00001",
                    "traffic": [{"revisionName": "m-predictor-default-00002", "percent": 100}],
                }
            }
        },
    }
    assert inference_service_revisions(v1beta1) == {
        "m-predictor-default-00001",
        "m-predictor-default-00002",
    }
    v1alpha2 = {
        "apiVersion": "serving.kubeflow.org/v1alpha2",
        "status": {
            "traffic": 90,
            "canaryTraffic": 10,
            "default": {"predictor": {"name": "m-predictor-default-x7k2p", "host": "h"}},
            "canary": {"predictor": {"name": "m-predictor-canary-q9z8w"}},
        },
    }
    assert inference_service_revisions(v1alpha2) == {
        "m-predictor-default-x7k2p",
        "m-predictor-canary-q9z8w",
    }


@pytest.mark.parametrize(
    "isvc",
    [
        {},
        {"status": None},
        {"status": {"components": None}},
        {"status": {"components": {"predictor": {"latestReadyRevision": ""}}}},
        {"status": {"components": {"predictor": {"latestReadyRevision": 7, "traffic": "x"}}}},
    ],
)
def test_inference_service_revisions_tolerates_partial_status(isvc: dict[str, Any]) -> None:
    assert inference_service_revisions(isvc) == frozenset()


def test_group_by_configuration() -> None:
    a1 = rev("a-00001", configuration="a")
    a2 = rev("a-00002", configuration="a")
    b1 = rev("b-00001", configuration="b")
    other_ns = rev("a-00001", configuration="a", namespace="other")
    unlabelled = rev("x-00001", configuration="")
    assert group_by_configuration([a1, b1, other_ns, a2, unlabelled, {"kind": "Revision"}]) == {
        ("ns", "a"): [a1, a2],
        ("ns", "b"): [b1],
        ("other", "a"): [other_ns],
    }


# ---------------------------------------------------------------------------------------------
# The worked retention examples of docs/policy-authors/revision-retention.md, run as written.
# ---------------------------------------------------------------------------------------------
LATEST_READY_REASON = "protected: latest ready revision of configuration iris-predictor-default"
DOC_SETTINGS = gc(min_=2, max_=4, create=48 * HOUR, active=15 * HOUR)
DOC_NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def doc_rev(
    name: str, created: str, state: str, modified: str, no_gc: bool = False
) -> dict[str, Any]:
    annotations = {"serving.knative.dev/routingStateModified": modified}
    if no_gc:
        annotations["serving.knative.dev/no-gc"] = "true"
    return {
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            "labels": {
                "serving.knative.dev/configuration": "iris-predictor-default",
                "serving.knative.dev/routingState": state,
            },
            "annotations": annotations,
        }
    }


DOC_EXAMPLE = [
    doc_rev(
        "iris-predictor-default-00001", "2024-05-22T12:00:00Z", "reserve", "2024-05-23T12:00:00Z"
    ),
    doc_rev(
        "iris-predictor-default-00002", "2024-05-24T12:00:00Z", "reserve", "2024-05-25T12:00:00Z"
    ),
    doc_rev(
        "iris-predictor-default-00003",
        "2024-05-26T12:00:00Z",
        "reserve",
        "2024-05-27T12:00:00Z",
        no_gc=True,
    ),
    doc_rev(
        "iris-predictor-default-00004", "2024-05-27T12:00:00Z", "reserve", "2024-05-31T16:00:00Z"
    ),
    doc_rev(
        "iris-predictor-default-00005", "2024-05-28T12:00:00Z", "reserve", "2024-06-01T02:00:00Z"
    ),
    doc_rev(
        "iris-predictor-default-00006", "2024-05-29T12:00:00Z", "active", "2024-05-29T12:00:00Z"
    ),
    doc_rev(
        "iris-predictor-default-00007", "2024-05-31T12:00:00Z", "active", "2024-05-31T12:00:00Z"
    ),
]


def test_docs_worked_example() -> None:
    verdicts = plan_revision_retention(
        revisions=DOC_EXAMPLE,
        latest_ready_revision="iris-predictor-default-00007",
        settings=DOC_SETTINGS,
        now=DOC_NOW,
    )
    table = [(v.name[-5:], v.action, v.reason, v.deletes_at) for v in verdicts]
    assert table == [
        (
            "00001",
            "delete",
            "stale: created 10d ago, last active 9d ago",
            datetime(2024, 5, 24, 12, 0, tzinfo=UTC),
        ),
        (
            "00002",
            "delete",
            "stale: created 8d ago, last active 7d ago",
            datetime(2024, 5, 26, 12, 0, tzinfo=UTC),
        ),
        ("00003", "keep", 'protected: annotation serving.knative.dev/no-gc="true"', None),
        ("00004", "keep", "kept: within minNonActive=2", datetime(2024, 6, 1, 7, 0, tzinfo=UTC)),
        (
            "00005",
            "keep",
            "kept: last active 10h ago, within retainSinceLastActive=15h",
            datetime(2024, 6, 1, 17, 0, tzinfo=UTC),
        ),
        ("00006", "keep", "protected: routingState=active", None),
        (
            "00007",
            "keep",
            LATEST_READY_REASON,
            None,
        ),
    ]


def test_docs_worked_example_next_cycle() -> None:
    """After 00001 and 00002 are gone, at 18:00 00005 is stale too, but minNonActive holds."""
    remaining = [r for r in DOC_EXAMPLE if r["metadata"]["name"][-5:] not in {"00001", "00002"}]
    verdicts = plan_revision_retention(
        revisions=remaining,
        latest_ready_revision="iris-predictor-default-00007",
        settings=DOC_SETTINGS,
        now=datetime(2024, 6, 1, 18, 0, tzinfo=UTC),
    )
    assert deleted(verdicts) == set()
    assert by_name(verdicts)["iris-predictor-default-00005"].reason == "kept: within minNonActive=2"


DOC_BURST = [
    doc_rev(
        "iris-predictor-default-00001", "2024-05-20T12:00:00Z", "reserve", "2024-05-30T12:00:00Z"
    ),
    doc_rev(
        "iris-predictor-default-00002", "2024-05-31T08:00:00Z", "reserve", "2024-05-31T09:00:00Z"
    ),
    doc_rev(
        "iris-predictor-default-00003", "2024-05-31T09:00:00Z", "reserve", "2024-05-31T10:00:00Z"
    ),
    doc_rev(
        "iris-predictor-default-00004", "2024-05-31T10:00:00Z", "reserve", "2024-05-31T11:00:00Z"
    ),
    doc_rev(
        "iris-predictor-default-00005", "2024-05-31T11:00:00Z", "reserve", "2024-06-01T09:00:00Z"
    ),
    doc_rev(
        "iris-predictor-default-00006", "2024-06-01T09:00:00Z", "reserve", "2024-06-01T10:00:00Z"
    ),
    doc_rev(
        "iris-predictor-default-00007", "2024-06-01T10:00:00Z", "active", "2024-06-01T10:00:00Z"
    ),
]


def test_docs_burst_example() -> None:
    verdicts = plan_revision_retention(
        revisions=DOC_BURST,
        latest_ready_revision="iris-predictor-default-00007",
        settings=DOC_SETTINGS,
        now=DOC_NOW,
    )
    table = [(v.name[-5:], v.action, v.reason) for v in verdicts]
    assert table == [
        ("00001", "delete", "stale: created 12d ago, last active 2d ago"),
        ("00002", "delete", "over maxNonActive=4"),
        ("00003", "keep", "kept: created 1d3h ago, within retainSinceCreate=2d"),
        ("00004", "keep", "kept: created 1d2h ago, within retainSinceCreate=2d"),
        (
            "00005",
            "keep",
            "kept: created 1d1h ago, within retainSinceCreate=2d; "
            "last active 3h ago, within retainSinceLastActive=15h",
        ),
        (
            "00006",
            "keep",
            "kept: created 3h ago, within retainSinceCreate=2d; "
            "last active 2h ago, within retainSinceLastActive=15h",
        ),
        ("00007", "keep", LATEST_READY_REASON),
    ]


# ---------------------------------------------------------------------------------------------
# Properties: a literal transcription of upstream's collect() as the oracle, plus safety.
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gen:
    """A generated revision: minutes before NOW, so ties are frequent."""

    name: str
    created_min: int
    modified_min: int | None
    state: str | None
    no_gc: bool

    def as_dict(self) -> dict[str, Any]:
        return rev(
            self.name,
            created_ago=self.created_min * MIN,
            modified_ago=None if self.modified_min is None else self.modified_min * MIN,
            state=self.state,
            no_gc="true" if self.no_gc else None,
        )


def knative_collect(
    revs: Sequence[Gen], latest_ready: str | None, s: RetentionSettings, now: datetime
) -> set[str]:
    """knative/serving pkg/reconciler/gc/gc.go collect(), line by line, on Gen records.

    Differences on purpose: the sort key adds our tie-break (Go's sort.Slice is unstable),
    and time arithmetic is done on minutes.
    """
    min_ = s.min_non_active or 0
    max_ = s.max_non_active
    create, active = s.retain_since_create, s.retain_since_last_active
    if max_ is None and create is None and active is None:
        return set()
    if len(revs) <= min_:
        return set()

    def is_active(r: Gen) -> bool:
        if latest_ready == r.name:
            return True
        if r.no_gc:
            return True
        return r.state != "reserve"

    def created(r: Gen) -> datetime:
        return now - r.created_min * MIN

    def last_active(r: Gen) -> datetime:
        return now - (r.modified_min if r.modified_min is not None else r.created_min) * MIN

    def is_stale(r: Gen) -> bool:
        if create is None and active is None:
            return False
        if create is not None and now - created(r) < create:
            return False
        return not (active is not None and now - last_active(r) < active)

    nonactive = [r for r in revs if not is_active(r)]
    if len(nonactive) <= min_:
        return set()
    nonactive.sort(key=lambda r: (last_active(r), created(r), r.name))
    slots: list[Gen | None] = list(nonactive)
    count = len(slots)
    max_idx = count - min_
    stale_count = 0
    gone: set[str] = set()
    for i in range(count):
        r = slots[i]
        assert r is not None
        if not is_stale(r):
            continue
        gone.add(r.name)
        slots[i] = None
        stale_count += 1
        if stale_count >= max_idx:
            return gone
    non_stale_count = count - stale_count
    if max_ is None or non_stale_count <= max_:
        return gone
    needs = non_stale_count - max_
    done = 0
    for slot in slots:
        if done == needs:
            break
        if slot is None:
            continue
        gone.add(slot.name)
        done += 1
    return gone


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Gen], str | None, RetentionSettings]:
    n = draw(st.integers(0, 10))
    revs = [
        Gen(
            name=f"r-{i:05d}",
            created_min=draw(st.sampled_from([0, 30, 60, 120, 300, 600])),
            modified_min=draw(st.sampled_from([None, 0, 30, 60, 120, 300])),
            state=draw(
                st.sampled_from(["reserve", "reserve", "reserve", "active", "pending", None])
            ),
            no_gc=draw(st.integers(0, 4)) == 0,
        )
        for i in range(1, n + 1)
    ]
    latest = draw(st.sampled_from([None, *(r.name for r in revs)]))
    durations = st.sampled_from([None, timedelta(0), 30 * MIN, 60 * MIN, 120 * MIN])
    min_ = draw(st.sampled_from([None, 0, 1, 2, 3]))
    max_ = draw(
        st.sampled_from([None, 0, 1, 2, 3, 5]).filter(lambda m: m is None or m >= (min_ or 0))
    )
    return revs, latest, gc(min_=min_, max_=max_, create=draw(durations), active=draw(durations))


@given(scenarios())
def test_matches_upstream_collect(
    scenario: tuple[list[Gen], str | None, RetentionSettings],
) -> None:
    revs, latest, s = scenario
    verdicts = plan([r.as_dict() for r in revs], s, latest_ready=latest)
    assert deleted(verdicts) == knative_collect(revs, latest, s, NOW)


@given(scenarios(), st.data())
def test_extra_protection_only_ever_removes_deletions(
    scenario: tuple[list[Gen], str | None, RetentionSettings], data: st.DataObject
) -> None:
    revs, latest, s = scenario
    names = [r.name for r in revs]
    extra = data.draw(st.sets(st.sampled_from(names)) if names else st.just(set()))
    dicts = [r.as_dict() for r in revs]
    base = deleted(plan(dicts, s, latest_ready=latest))
    guarded = deleted(plan(dicts, s, latest_ready=latest, protected=extra))
    assert guarded <= base - extra


@given(scenarios())
def test_safety_invariants(scenario: tuple[list[Gen], str | None, RetentionSettings]) -> None:
    revs, latest, s = scenario
    verdicts = plan([r.as_dict() for r in revs], s, latest_ready=latest)
    non_active = [v for v in verdicts if not v.reason.startswith("protected:")]
    kept_non_active = [v for v in non_active if v.action == "keep"]
    for v in verdicts:
        if v.reason.startswith("protected:"):
            assert v.action == "keep" and v.deletes_at is None
        if v.action == "delete":
            assert v.reason.startswith(("stale:", "over maxNonActive="))
    minimum = s.min_non_active or 0
    assert len(kept_non_active) >= min(minimum, len(non_active))
    if s.max_non_active is not None:
        assert len(kept_non_active) <= s.max_non_active


def test_only_protected_and_unreadable_revisions_are_marked_protected():
    now = datetime(2026, 5, 1, tzinfo=UTC)
    old = "2026-01-01T00:00:00Z"

    def rev(name, **meta):
        labels = {"serving.knative.dev/routingState": meta.pop("state", "reserve")}
        return {
            "metadata": {
                "name": name,
                "namespace": "a",
                "uid": name,
                "creationTimestamp": meta.pop("created", old),
                "labels": labels,
                **meta,
            }
        }

    verdicts = plan_revision_retention(
        revisions=[
            rev("latest"),
            rev("routed", state="active"),
            rev("unreadable", created="yesterday"),
            rev("stale-1"),
            rev("stale-2"),
        ],
        latest_ready_revision="latest",
        settings=RetentionSettings(
            min_non_active=1,
            max_non_active=None,
            retain_since_create=timedelta(hours=1),
            retain_since_last_active=None,
        ),
        now=now,
    )
    protected = {v.name: v.protected for v in verdicts}
    assert protected == {
        "latest": True,
        "routed": True,
        "unreadable": True,
        "stale-1": False,
        "stale-2": False,
    }
    actions = {v.name: v.action for v in verdicts}
    # Equally old: the lower name goes first, the other is held by minNonActive=1.
    assert (actions["stale-1"], actions["stale-2"]) == ("delete", "keep")
