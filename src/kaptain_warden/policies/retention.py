"""Knative revision retention: Knative Serving's revision GC, as a pure plan with reasons."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from kaptain_warden.policies.durations import describe_duration
from kaptain_warden.policies.metadata import (
    KNATIVE_CONFIGURATION_LABEL,
    KNATIVE_NO_GC,
    KNATIVE_ROUTING_STATE_LABEL,
    KNATIVE_ROUTING_STATE_MODIFIED,
)
from kaptain_warden.policies.objects import string_map
from kaptain_warden.policies.timestamps import parse_time

__all__ = [
    "Action",
    "RetentionSettings",
    "RevisionVerdict",
    "group_by_configuration",
    "inference_service_revisions",
    "plan_revision_retention",
]

# v1.RoutingStateReserve: the only routing state the GC may collect.
_RESERVE = "reserve"

# Fields of an InferenceService's status.components.<component> naming revisions
# (KServe and KFServing v1beta1 ComponentStatusSpec).
_ISVC_REVISION_FIELDS = (
    "latestCreatedRevision",
    "latestReadyRevision",
    "latestRolledoutRevision",
    "previousRolledoutRevision",
)

#: What the sweeper does with an object (a revision here, any governed object in `expiry`).
Action = Literal["delete", "keep"]


@dataclass(frozen=True)
class RetentionSettings:
    """Knative's config-gc vocabulary; None disables a setting (Knative's "disabled").

    `min_non_active` None means 0: Knative itself cannot disable it (it must be >= 0), and
    0 is what "no minimum" means in its algorithm.
    """

    min_non_active: int | None
    max_non_active: int | None
    retain_since_create: timedelta | None
    retain_since_last_active: timedelta | None

    def __post_init__(self) -> None:
        for name in ("min_non_active", "max_non_active"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer or None, got {value!r}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0 (or None to disable), got {value}")
        for name in ("retain_since_create", "retain_since_last_active"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, timedelta):
                raise ValueError(f"{name} must be a timedelta or None, got {value!r}")
            if value < timedelta(0):
                raise ValueError(f"{name} must not be negative, got {value}")
        # Knative's pkg/gc/config.go: min-non-active-revisions must be <= max when max is set.
        if (
            self.min_non_active is not None
            and self.max_non_active is not None
            and self.min_non_active > self.max_non_active
        ):
            raise ValueError(
                f"min_non_active ({self.min_non_active}) must be <= "
                f"max_non_active ({self.max_non_active})"
            )


@dataclass(frozen=True)
class RevisionVerdict:
    """What retention decided for one Revision, and why.

    `deletes_at` is the instant from which the age rules (retainSinceCreate and
    retainSinceLastActive) consider the revision stale; it may be in the past. It is None
    when the revision is protected, when a timestamp could not be read, or when both age
    rules are disabled. The count rules can still hold a stale revision (minNonActive) or
    remove a fresh one (maxNonActive): `action` is the decision, `deletes_at` the age clock.
    """

    namespace: str
    name: str
    uid: str
    action: Action
    reason: str
    deletes_at: datetime | None
    # Kept whatever else holds: Knative protects it, an InferenceService names it, or it
    # cannot be read. Counted by neither minNonActive nor maxNonActive.
    protected: bool = False


@dataclass(frozen=True)
class _Candidate:
    """A readable, unprotected (Knative: "non-active") revision."""

    index: int
    namespace: str
    name: str
    uid: str
    created: datetime
    last_active: datetime


def plan_revision_retention(
    *,
    revisions: Sequence[Mapping[str, Any]],
    latest_ready_revision: str | None,
    protected_names: Collection[str] = (),
    settings: RetentionSettings,
    now: datetime,
) -> list[RevisionVerdict]:
    """Decide, for the Revisions of ONE Configuration, which Knative's GC would delete.

    Mirrors knative/serving pkg/reconciler/gc/gc.go `collect`:

    1. Protected ("active" in Knative's words) and never counted: the Configuration's latest
       ready revision, `serving.knative.dev/no-gc: "true"` (case-insensitive), and any
       revision whose routingState label is not `reserve` (active, pending, unset or an
       unknown value). We add `protected_names` (InferenceService status revisions) and
       revisions whose timestamps we cannot read; both are excluded from the counts too,
       so they can only make the plan delete less than Knative would.
    2. Nothing is deleted when maxNonActive and both age rules are disabled, or when there
       are at most minNonActive non-active revisions.
    3. Non-active revisions are ordered oldest first by last activity: the
       routingStateModified annotation, else creationTimestamp. Ties (Go's sort.Slice is not
       stable) are broken by creationTimestamp, then name, then uid, so the older-created,
       lower-numbered revision goes first.
    4. Stale revisions (created at least retainSinceCreate ago AND last active at least
       retainSinceLastActive ago; a disabled rule does not hold a revision) are deleted
       oldest first, stopping once only minNonActive non-active revisions would remain.
    5. If that stop was not reached and more than maxNonActive remain, the oldest of the
       remaining ones are deleted until maxNonActive remain.

    Returns one verdict per input revision, in input order. `now` must be timezone-aware.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    protected = frozenset(protected_names)
    verdicts: list[RevisionVerdict | None] = [None] * len(revisions)
    candidates: list[_Candidate] = []

    for index, revision in enumerate(revisions):
        meta = revision.get("metadata") if isinstance(revision, Mapping) else None
        if not isinstance(meta, Mapping):
            verdicts[index] = _keep("", "", "", "kept: malformed revision (no metadata)")
            continue
        namespace = _str(meta.get("namespace"))
        name = _str(meta.get("name"))
        uid = _str(meta.get("uid"))
        if not name:
            verdicts[index] = _keep(namespace, name, uid, "kept: malformed revision (no name)")
            continue
        labels = string_map(meta.get("labels"))
        annotations = string_map(meta.get("annotations"))

        reason = _protection(
            name=name,
            labels=labels,
            annotations=annotations,
            latest_ready_revision=latest_ready_revision,
            protected=protected,
        )
        if reason is not None:
            verdicts[index] = _keep(namespace, name, uid, reason)
            continue

        created = parse_time(meta.get("creationTimestamp"))
        if created is None:
            verdicts[index] = _keep(
                namespace,
                name,
                uid,
                "kept: unreadable timestamp: metadata.creationTimestamp="
                f"{meta.get('creationTimestamp')!r}",
            )
            continue
        # Knative's GetRoutingStateModified falls back to creation time when the annotation
        # is absent *or unparsable*; we only fall back when it is absent, because an
        # unreadable activity time must never make a revision look idle.
        raw_modified = annotations.get(KNATIVE_ROUTING_STATE_MODIFIED, "")
        if raw_modified:
            last_active = parse_time(raw_modified)
            if last_active is None:
                verdicts[index] = _keep(
                    namespace,
                    name,
                    uid,
                    f"kept: unreadable timestamp: {KNATIVE_ROUTING_STATE_MODIFIED}="
                    f"{raw_modified!r}",
                )
                continue
        else:
            last_active = created
        candidates.append(
            _Candidate(
                index=index,
                namespace=namespace,
                name=name,
                uid=uid,
                created=created,
                last_active=last_active,
            )
        )

    decisions = _decide(candidates, settings=settings, now=now)
    for candidate in candidates:
        action, reason = decisions[candidate.index]
        verdicts[candidate.index] = RevisionVerdict(
            namespace=candidate.namespace,
            name=candidate.name,
            uid=candidate.uid,
            action=action,
            reason=reason,
            deletes_at=_stale_from(candidate, settings),
        )

    # Every input revision got exactly one verdict above.
    return [v for v in verdicts if v is not None]


def _decide(
    candidates: Sequence[_Candidate], *, settings: RetentionSettings, now: datetime
) -> dict[int, tuple[Action, str]]:
    """Knative's collect() on the non-active revisions: index -> (action, reason)."""
    minimum = settings.min_non_active or 0
    maximum = settings.max_non_active
    decisions: dict[int, tuple[Action, str]] = {}

    if (
        maximum is None
        and settings.retain_since_create is None
        and settings.retain_since_last_active is None
    ):
        for c in candidates:
            decisions[c.index] = (
                "keep",
                "kept: revision GC disabled (maxNonActive, retainSinceCreate and "
                "retainSinceLastActive are all disabled)",
            )
        return decisions
    if len(candidates) <= minimum:
        for c in candidates:
            decisions[c.index] = ("keep", f"kept: within minNonActive={minimum}")
        return decisions

    ordered = sorted(candidates, key=lambda c: (c.last_active, c.created, c.name, c.uid))

    # Stale pass: delete stale revisions oldest first while more than `minimum` remain.
    deletable = len(ordered) - minimum  # >= 1 here
    deleted = 0
    survivors: list[_Candidate] = []
    limit_reached = False
    for c in ordered:
        if limit_reached:
            survivors.append(c)
            continue
        if _is_stale(c, settings, now):
            decisions[c.index] = ("delete", _stale_reason(c, now))
            deleted += 1
            limit_reached = deleted >= deletable
        else:
            survivors.append(c)

    if limit_reached:
        # Knative returns here: exactly `minimum` remain, which is <= maxNonActive.
        for c in survivors:
            if _is_stale(c, settings, now):
                decisions[c.index] = ("keep", f"kept: within minNonActive={minimum}")
            else:
                decisions[c.index] = ("keep", _fresh_reason(c, settings, now))
        return decisions

    # Max pass: every survivor is fresh; trim the oldest beyond maxNonActive.
    excess = len(survivors) - maximum if maximum is not None else 0
    for position, c in enumerate(survivors):
        if position < excess:
            decisions[c.index] = ("delete", f"over maxNonActive={maximum}")
        else:
            decisions[c.index] = ("keep", _fresh_reason(c, settings, now))
    return decisions


def _protection(
    *,
    name: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    latest_ready_revision: str | None,
    protected: frozenset[str],
) -> str | None:
    """Why a revision is never collected (Knative's isRevisionActive, plus ours), or None."""
    if latest_ready_revision and name == latest_ready_revision:
        configuration = labels.get(KNATIVE_CONFIGURATION_LABEL) or "(unlabelled)"
        return f"protected: latest ready revision of configuration {configuration}"
    # strings.EqualFold(..., "true") in Knative.
    if annotations.get(KNATIVE_NO_GC, "").casefold() == "true":
        return f'protected: annotation {KNATIVE_NO_GC}="true"'
    if name in protected:
        return "protected: named in an InferenceService status"
    state = labels.get(KNATIVE_ROUTING_STATE_LABEL)
    if state != _RESERVE:
        # Knative: "Anything that the labeler hasn't explicitly labelled as inactive" is
        # active; RoutingStatePending is documented as treated like active for GC.
        if state is None or state == "":
            return "protected: routingState unset (Knative treats it as active)"
        if state in ("active", "pending"):
            return f"protected: routingState={state}"
        return f"protected: routingState={state!r} (only 'reserve' is collectable)"
    return None


def _is_stale(c: _Candidate, settings: RetentionSettings, now: datetime) -> bool:
    """Knative's isRevisionStale: both enabled age rules have run out (>=, not >)."""
    since_create, since_active = settings.retain_since_create, settings.retain_since_last_active
    if since_create is None and since_active is None:
        return False
    if since_create is not None and now - c.created < since_create:
        return False
    return not (since_active is not None and now - c.last_active < since_active)


def _stale_from(c: _Candidate, settings: RetentionSettings) -> datetime | None:
    """The first instant at which _is_stale holds (None when both age rules are off)."""
    deadlines = []
    if settings.retain_since_create is not None:
        deadlines.append(c.created + settings.retain_since_create)
    if settings.retain_since_last_active is not None:
        deadlines.append(c.last_active + settings.retain_since_last_active)
    return max(deadlines) if deadlines else None


def _stale_reason(c: _Candidate, now: datetime) -> str:
    return f"stale: created {_ago(now - c.created)}, last active {_ago(now - c.last_active)}"


def _fresh_reason(c: _Candidate, settings: RetentionSettings, now: datetime) -> str:
    held: list[str] = []
    if settings.retain_since_create is not None and now - c.created < settings.retain_since_create:
        held.append(
            f"created {_ago(now - c.created)}, "
            f"within retainSinceCreate={describe_duration(settings.retain_since_create)}"
        )
    if (
        settings.retain_since_last_active is not None
        and now - c.last_active < settings.retain_since_last_active
    ):
        held.append(
            f"last active {_ago(now - c.last_active)}, "
            f"within retainSinceLastActive={describe_duration(settings.retain_since_last_active)}"
        )
    if held:
        return "kept: " + "; ".join(held)
    # Both age rules disabled: only the maximum can remove it, and it did not.
    return f"kept: within maxNonActive={settings.max_non_active}"


def inference_service_revisions(isvc: Mapping[str, Any]) -> frozenset[str]:
    """Revision names an InferenceService's status still refers to.

    KServe (serving.kserve.io) and KFServing (serving.kubeflow.org) v1beta1:
    status.components.<component>.{latestCreatedRevision, latestReadyRevision,
    latestRolledoutRevision, previousRolledoutRevision} and traffic[].revisionName (a canary
    keeps the previous rolled-out revision routed; `rollback` needs it). KFServing
    v1alpha2: status.{default,canary}.<component>.name (its latest ready revision).
    """
    status = isvc.get("status")
    if not isinstance(status, Mapping):
        return frozenset()
    names: set[str] = set()
    components = status.get("components")
    if isinstance(components, Mapping):
        for component in components.values():
            if not isinstance(component, Mapping):
                continue
            for field in _ISVC_REVISION_FIELDS:
                names.add(_str(component.get(field)))
            traffic = component.get("traffic")
            if isinstance(traffic, list):
                for target in traffic:
                    if isinstance(target, Mapping):
                        names.add(_str(target.get("revisionName")))
    for endpoint in ("default", "canary"):
        per_component = status.get(endpoint)
        if isinstance(per_component, Mapping):
            for component in per_component.values():
                if isinstance(component, Mapping):
                    names.add(_str(component.get("name")))
    names.discard("")
    return frozenset(names)


def group_by_configuration(
    revisions: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """Group Revisions by (namespace, serving.knative.dev/configuration label).

    Knative's GC lists a Configuration's revisions by that label, so a revision without
    it belongs to no Configuration and is left out (it is never planned, never deleted).
    Input order is kept within each group.
    """
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for revision in revisions:
        meta = revision.get("metadata") if isinstance(revision, Mapping) else None
        if not isinstance(meta, Mapping):
            continue
        configuration = string_map(meta.get("labels")).get(KNATIVE_CONFIGURATION_LABEL, "")
        if not configuration:
            continue
        groups.setdefault((_str(meta.get("namespace")), configuration), []).append(revision)
    return groups


def _keep(namespace: str, name: str, uid: str, reason: str) -> RevisionVerdict:
    return RevisionVerdict(
        namespace=namespace,
        name=name,
        uid=uid,
        action="keep",
        reason=reason,
        deletes_at=None,
        protected=True,
    )


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _ago(delta: timedelta) -> str:
    if delta < timedelta(0):
        return f"{describe_duration(-delta, largest_units=2)} in the future"
    return f"{describe_duration(delta, largest_units=2)} ago"
