"""Admission decisions: what the mutating webhook stamps and what the validating one denies.

The metadata contract (README, "Metadata contract"): system keys (`managed`, `owner`, `rule`,
`created-at`, `expires-at`) are the warden's alone, computed on CREATE and carried over on
UPDATE whatever the request sends; user keys (`ttl`, `ttl-after-finished`, `keep`) are a
person's, honoured within the rule's limits and changed only by an explicit new value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from kaptain_warden.policies.durations import (
    ACCEPTED,
    DurationError,
    format_duration,
    parse_duration,
)
from kaptain_warden.policies.evaluate import Subject, find_rule, is_excluded_namespace
from kaptain_warden.policies.expiry_warnings import creation_warning
from kaptain_warden.policies.inheritance import parent_refs
from kaptain_warden.policies.kinds import known_kind
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.policies.model import Policy, Rule
from kaptain_warden.policies.objects import metadata_of, string_map
from kaptain_warden.policies.owner import owner_label_value
from kaptain_warden.policies.provenance import NO_PROVENANCE, CreatorPod, Provenance
from kaptain_warden.policies.timestamps import format_time, parse_time

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
# A created-at further than this from the validator's clock was not written by our mutator.
CLOCK_TOLERANCE = timedelta(minutes=5)
# A created-at this close to now on a CREATE is taken for the mutator's own, written by an
# earlier invocation of the same request (a reinvocation comes within the same request, in
# milliseconds): kept, so that a reinvocation changes nothing. Anything older is replaced.
REINVOCATION_WINDOW = timedelta(seconds=10)
# Legacy tf-operator kept these directly under spec; their presence tells the shape in use.
_LEGACY_RUN_POLICY_FIELDS = (
    "cleanPodPolicy",
    "ttlSecondsAfterFinished",
    "activeDeadlineSeconds",
    "backoffLimit",
)


@dataclass(frozen=True)
class AdmissionRequest:
    """The parts of an AdmissionReview request the decisions need, as plain data."""

    uid: str
    operation: Operation
    api_version: str
    kind: str
    namespace: str
    name: str
    username: str
    groups: tuple[str, ...] = ()
    obj: Mapping[str, Any] | None = None
    old_obj: Mapping[str, Any] | None = None
    sub_resource: str = ""
    dry_run: bool = False
    # The Pod the requester's bound ServiceAccount token names (`userInfo.extra`), if any.
    pod: CreatorPod | None = None

    def subject(
        self,
        *,
        inherited_owner: str | None = None,
        namespace_labels: Mapping[str, str] | None = None,
    ) -> Subject:
        """The facts to match rules against (the new object, or the old one on DELETE)."""
        obj = self.obj if self.obj is not None else (self.old_obj or {})
        return Subject(
            api_version=self.api_version,
            kind=self.kind,
            namespace=self.namespace,
            obj=obj,
            username=self.username,
            groups=self.groups,
            namespace_labels=namespace_labels,
            inherited_owner=inherited_owner,
        )


@dataclass(frozen=True)
class Mutation:
    """The mutating webhook's answer: the matched rule and RFC 6902 operations (maybe none)."""

    rule: Rule | None
    patch: tuple[dict[str, Any], ...]
    reason: str
    # Values a person sent that the patch replaces (the response's `warnings`).
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Verdict:
    """The validating webhook's answer."""

    allowed: bool
    message: str
    rule: Rule | None = None
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Stamp:
    """The warden metadata an object should carry, and native TTL fields to fill in."""

    labels: dict[str, str]
    annotations: dict[str, str]
    # (JSON pointer, value) pairs for native TTL fields the object does not set.
    native: tuple[tuple[str, Any], ...] = ()


def _escape(key: str) -> str:
    """A map key as a JSON Pointer reference token (RFC 6901: `~` → `~0`, `/` → `~1`)."""
    return key.replace("~", "~0").replace("/", "~1")


def _string_map(metadata: Mapping[str, Any], name: str) -> dict[str, str]:
    value = metadata.get(name)
    return dict(value) if isinstance(value, Mapping) else {}


def _user_duration(value: str | None, rule: Rule) -> timedelta | None:
    """A user-requested duration, when it parses and is within the rule's maxTtl."""
    if value is None:
        return None
    try:
        parsed = parse_duration(value)
    except DurationError:
        return None
    return parsed if parsed <= rule.max_ttl else None


def _native_ttl(obj: Mapping[str, Any], seconds: int) -> tuple[tuple[str, Any], ...]:
    """Where to mirror ttlAfterFinished into the kind's own TTL field, if it is unset."""
    kind = known_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    spec = obj.get("spec")
    if kind is None or kind.native_ttl is None or not isinstance(spec, Mapping):
        return ()
    if kind.native_ttl == "job":
        return (
            ()
            if "ttlSecondsAfterFinished" in spec
            else (("/spec/ttlSecondsAfterFinished", seconds),)
        )
    run_policy = spec.get("runPolicy")
    if isinstance(run_policy, Mapping):
        if "ttlSecondsAfterFinished" in run_policy:
            return ()
        return (("/spec/runPolicy/ttlSecondsAfterFinished", seconds),)
    if any(f in spec for f in _LEGACY_RUN_POLICY_FIELDS):
        if "ttlSecondsAfterFinished" in spec:
            return ()
        return (("/spec/ttlSecondsAfterFinished", seconds),)
    return (("/spec/runPolicy", {"ttlSecondsAfterFinished": seconds}),)


def plan_stamp(
    *, policy: Policy, rule: Rule, obj: Mapping[str, Any], owner: str, now: datetime
) -> Stamp:
    """The full warden metadata for a governed object, honouring valid user-set values.

    Used by the sweeper's backfill and for CREATEs by privileged identities (restores,
    migrations): keys the object already carries are reported as they are, so only what is
    missing is added.
    """
    keys = policy.keys
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    annotations = _string_map(metadata, "annotations")
    created = parse_time(annotations.get(keys.created_at)) or now
    labels = {
        keys.managed: "true",
        keys.owner: owner_label_value(owner),
        keys.rule: rule.id,
    }
    wanted = {keys.owner: owner, keys.created_at: format_time(created)}
    # A valid user-set value is kept as written; an unusable one is replaced by the rule's
    # (the validator denies it with a message, the stamp never trusts it).
    ttl = _user_duration(annotations.get(keys.ttl), rule)
    if ttl is not None:
        wanted[keys.ttl] = annotations[keys.ttl]
    elif rule.ttl is not None:
        ttl = rule.ttl
        wanted[keys.ttl] = format_duration(ttl)
    if ttl is not None:
        wanted[keys.expires_at] = format_time(created + ttl)
    after = _user_duration(annotations.get(keys.ttl_after_finished), rule)
    if after is not None:
        wanted[keys.ttl_after_finished] = annotations[keys.ttl_after_finished]
    elif rule.ttl_after_finished is not None:
        after = rule.ttl_after_finished
        wanted[keys.ttl_after_finished] = format_duration(after)
    native = _native_ttl(obj, int(after.total_seconds())) if after is not None else ()
    return Stamp(labels=labels, annotations=wanted, native=native)


def _missing_ops(
    metadata: Mapping[str, Any], section: str, wanted: Mapping[str, str]
) -> list[dict[str, Any]]:
    """`add` operations for the keys of `wanted` absent from metadata[section]."""
    current = metadata.get(section)
    if not isinstance(current, Mapping):
        # Adding at /metadata/labels replaces the whole map: only when there is no map at all.
        return (
            [{"op": "add", "path": f"/metadata/{section}", "value": dict(wanted)}] if wanted else []
        )
    return [
        {"op": "add", "path": f"/metadata/{section}/{_escape(k)}", "value": v}
        for k, v in wanted.items()
        if k not in current
    ]


def stamp_patch(obj: Mapping[str, Any], stamp: Stamp) -> list[dict[str, Any]]:
    """RFC 6902 operations that add the stamp's missing keys and native TTL fields to `obj`."""
    metadata = obj.get("metadata")
    if isinstance(metadata, Mapping):
        ops = _missing_ops(metadata, "labels", stamp.labels)
        ops += _missing_ops(metadata, "annotations", stamp.annotations)
    else:
        value = {"labels": stamp.labels, "annotations": stamp.annotations}
        ops = [{"op": "add", "path": "/metadata", "value": value}]
    ops += [{"op": "add", "path": path, "value": value} for path, value in stamp.native]
    return ops


def expected_owner(request: AdmissionRequest, inherited_owner: str | None, rule: Rule) -> str:
    """Who owns a new object: the managed parent's owner if it inherits, else the requester."""
    if rule.match.inherit and inherited_owner is not None:
        return inherited_owner
    return request.username


def _skip_reason(policy: Policy, request: AdmissionRequest) -> str | None:
    # A status UPDATE is judged like any UPDATE (only metadata is ever judged): for built-in
    # kinds it can change labels and annotations. The webhook rules send only those.
    if request.sub_resource and not (
        request.sub_resource == "status" and request.operation == "UPDATE"
    ):
        return f"subresource {request.sub_resource} is not governed"
    if request.operation in ("DELETE", "CONNECT"):
        return f"{request.operation} is not governed"
    if is_excluded_namespace(policy, request.namespace):
        return f"namespace {request.namespace or '(cluster scope)'} is excluded"
    if not isinstance(request.obj, Mapping):
        return "the request carries no object"
    return None


# --- the contract: what an object's warden keys must be once admitted ------------------------


@dataclass(frozen=True)
class _Plan:
    """The warden keys an object must carry once admitted (None: the key must be absent)."""

    rule: Rule | None
    labels: dict[str, str | None]
    annotations: dict[str, str | None]
    # Why a key must have its value, for a denial ("the warden sets it", …).
    why: Mapping[str, str]
    # RFC 6902 operations on native TTL fields (spec), applied by the mutator only.
    native: tuple[dict[str, Any], ...] = ()
    # User-key values that are not allowed: the validator denies them, naming the key.
    problems: tuple[str, ...] = ()
    # Values a person sent that the mutator replaced: the admission response says so.
    warnings: tuple[str, ...] = ()
    # Keys whose absence the validator accepts too (values found by a lookup the mutator's
    # own lookup may have missed), and keys it does not judge (its own lookup failed).
    optional: frozenset[str] = frozenset()
    unchecked: frozenset[str] = frozenset()


def _maps(obj: Mapping[str, Any] | None) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) of an object, as str -> str."""
    metadata = metadata_of(obj) if isinstance(obj, Mapping) else {}
    return string_map(metadata.get("labels")), string_map(metadata.get("annotations"))


def _user_duration_or(value: str | None, rule: Rule, default: timedelta | None) -> timedelta | None:
    parsed = _user_duration(value, rule)
    return parsed if parsed is not None else default


def _shown(value: str | None) -> str:
    return "absent" if value is None else f'"{value}"'


def _replaced(
    changes: Sequence[tuple[str, str | None, str | None, str | None]], template: str
) -> tuple[str, ...]:
    """Warnings for the values a request sent that differ from both the old and the kept one.

    `changes` holds (key, sent, old, kept); a key absent from the request is not a change.
    """
    return tuple(
        template.format(key=key, sent=_shown(sent), kept=_shown(kept))
        for key, sent, old, kept in changes
        if sent is not None and sent not in (kept, old)
    )


def _mutator_created_at(obj: Mapping[str, Any], keys: MetadataKeys, now: datetime) -> datetime:
    """The creation time the mutator stamps: now, unless this very request was stamped a
    moment ago (a reinvocation after another webhook changed the object: no new patch).

    Nothing else tells a reinvocation from a copied or exported value: the API server wipes
    `creationTimestamp` and `uid` before the mutating webhooks run. A value within
    REINVOCATION_WINDOW of now is, for every expiry, the same as now.
    """
    created = parse_time(_maps(obj)[1].get(keys.created_at))
    if created is not None and abs(now - created) <= REINVOCATION_WINDOW:
        return created
    return now


def _native_location(obj: Mapping[str, Any]) -> tuple[str, object] | None:
    """(JSON pointer, current value or None) of the kind's native TTL field, if it has one."""
    kind = known_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    spec = obj.get("spec")
    if kind is None or kind.native_ttl is None or not isinstance(spec, Mapping):
        return None
    run_policy = spec.get("runPolicy")
    if kind.native_ttl == "job" or (
        not isinstance(run_policy, Mapping) and any(f in spec for f in _LEGACY_RUN_POLICY_FIELDS)
    ):
        return "/spec/ttlSecondsAfterFinished", spec.get("ttlSecondsAfterFinished")
    value = run_policy.get("ttlSecondsAfterFinished") if isinstance(run_policy, Mapping) else None
    return "/spec/runPolicy/ttlSecondsAfterFinished", value


def _native_follows(
    old: Mapping[str, Any], new: Mapping[str, Any], old_after: str | None, new_after: str | None
) -> tuple[dict[str, Any], ...]:
    """Keep a native TTL the warden mirrored equal to `ttl-after-finished` across an update.

    Only when the old native value was the mirror, and the request did not set a value of
    its own: a replace that drops the field gets it back, a TTL change moves it along.
    """
    old_seconds, seconds = _duration_seconds(old_after), _duration_seconds(new_after)
    old_place, new_place = _native_location(old), _native_location(new)
    if old_seconds is None or seconds is None or old_place is None or new_place is None:
        return ()
    if old_place[1] != old_seconds:
        return ()
    path, value = new_place
    if value is None:
        return tuple({"op": "add", "path": p, "value": v} for p, v in _native_ttl(new, seconds))
    if value != old_place[1] or value == seconds:
        return ()
    return ({"op": "add", "path": path, "value": seconds},)


def _duration_seconds(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(parse_duration(value).total_seconds())
    except DurationError:
        return None


def _plan_ungoverned(keys: MetadataKeys, request: AdmissionRequest) -> _Plan:
    """No rule governs the object: a non-privileged request carries no warden key."""
    labels, annotations = _maps(request.obj)
    sent = [f"label {k}" for k in keys.labels if k in labels]
    sent += [f"annotation {k}" for k in keys.annotations if k in annotations]
    warnings = (
        (
            f"kaptain-warden removed {', '.join(sent)}: no kaptain-warden rule governs this "
            f"{request.kind}, so it carries no warden metadata",
        )
        if sent
        else ()
    )
    return _Plan(
        None,
        dict.fromkeys(keys.labels),
        dict.fromkeys(keys.annotations),
        dict.fromkeys((*keys.labels, *keys.annotations), "no rule governs this object"),
        warnings=warnings,
    )


def _plan_create(
    policy: Policy,
    request: AdmissionRequest,
    rule: Rule,
    *,
    inherited_owner: str | None,
    created: datetime,
    provenance: Provenance = NO_PROVENANCE,
    inherited_provenance: Provenance | None = None,
) -> _Plan:
    """CREATE by a non-privileged identity: the system keys computed, whatever was sent.

    Provenance is the request's Pod (and what lookups found about it), or for a
    controller-made child its managed parent's: a controller's own Pod is never a creator.
    """
    keys = policy.keys
    assert request.obj is not None  # checked by _skip_reason
    labels, annotations = _maps(request.obj)
    owner = expected_owner(request, inherited_owner, rule)
    # A controller-made child follows its own rule: user keys copied from its parent are
    # dropped (a Knative Service never inherits an expiry from its InferenceService).
    # Made by someone other than the owner it inherits: a controller (a person making a child
    # of their own object is treated as a person, like on UPDATE).
    inherits = rule.match.inherit and inherited_owner not in (None, request.username)
    problems: list[str] = []
    rule_ttl = format_duration(rule.ttl) if rule.ttl is not None else None
    rule_after = (
        format_duration(rule.ttl_after_finished) if rule.ttl_after_finished is not None else None
    )
    if inherits:
        ttl_value, after_value, keep_value = rule_ttl, rule_after, None
    else:
        ttl_value = annotations.get(keys.ttl)
        after_value = annotations.get(keys.ttl_after_finished)
        keep_value = annotations.get(keys.keep)
        problems += duration_problems(keys.ttl, ttl_value, rule)
        problems += duration_problems(keys.ttl_after_finished, after_value, rule)
        problems += _check_keep(keys, keep_value, rule)
        ttl_value = rule_ttl if ttl_value is None else ttl_value
        after_value = rule_after if after_value is None else after_value
    # An unusable user value stays for the validator to name; the expiry never trusts it.
    ttl = _user_duration_or(ttl_value, rule, rule.ttl)
    after = _user_duration_or(after_value, rule, rule.ttl_after_finished)
    wanted_labels: dict[str, str | None] = {
        keys.managed: "true",
        keys.owner: owner_label_value(owner),
        keys.rule: rule.id,
    }
    origin = (inherited_provenance or NO_PROVENANCE) if inherits else provenance
    wanted_labels[keys.notebook] = (
        owner_label_value(origin.notebook) if origin.notebook is not None else None
    )
    # Every other system annotation (backfilled-at: only the sweeper's backfill, a privileged
    # identity, writes it) is absent from a new object.
    wanted_annotations: dict[str, str | None] = dict.fromkeys(keys.annotations)
    wanted_annotations.update(
        {
            keys.owner: owner,
            keys.created_at: format_time(created),
            keys.expires_at: format_time(created + ttl) if ttl is not None else None,
            keys.ttl: ttl_value,
            keys.ttl_after_finished: after_value,
            keys.keep: keep_value,
            **origin.annotations(keys),
        }
    )
    native = tuple(
        {"op": "add", "path": path, "value": value}
        for path, value in (
            _native_ttl(request.obj, int(after.total_seconds())) if after is not None else ()
        )
    )
    why = dict.fromkeys((*keys.labels, *keys.annotations), "the warden sets it")
    why[keys.owner] = "the owner inherited from its managed parent" if inherits else "the requester"
    why[keys.expires_at] = f"{keys.created_at} + {keys.ttl}; the warden sets it"
    source = "its managed parent's" if inherits else "the Pod of the requester's bound token"
    why.update(
        dict.fromkeys(origin.annotations(keys), f"provenance: {source}; absent when there is none")
    )
    why.update(
        dict.fromkeys(
            keys.user_annotations,
            f"a {request.kind} made for a managed parent follows its own rule {rule.id}"
            if inherits
            else f"the default of rule {rule.id} when the manifest sets none",
        )
    )
    warnings: tuple[str, ...] = ()
    if not inherits:
        warnings = _replaced(
            [(f"label {k}", labels.get(k), None, wanted_labels[k]) for k in keys.labels]
            + [
                (f"annotation {k}", annotations.get(k), None, wanted_annotations[k])
                for k in keys.annotations
                if k not in keys.user_annotations
            ],
            "kaptain-warden replaced {key} {sent} with {kept}: the warden computes its "
            "system keys on creation",
        )
    return _Plan(
        rule,
        wanted_labels,
        wanted_annotations,
        why,
        native=native,
        problems=tuple(problems),
        warnings=warnings,
        optional=frozenset({keys.notebook, keys.profile_owner}),
        unchecked=frozenset() if inherits else _unresolved(keys, origin),
    )


def _unresolved(keys: MetadataKeys, provenance: Provenance) -> frozenset[str]:
    """The provenance keys whose lookup failed (the notebook's label goes with its annotation)."""
    return frozenset(k for k in (keys.notebook, keys.profile_owner) if k in provenance.unresolved)


def _is_child(policy: Policy, rule: Rule | None, request: AdmissionRequest) -> bool:
    """An update of a controller-made child, sent by someone other than its owner: a
    controller re-applying what it copies from the parent."""
    if rule is None or not rule.match.inherit or not isinstance(request.old_obj, Mapping):
        return False
    owner = _maps(request.old_obj)[1].get(policy.keys.owner)
    return bool(parent_refs(request.old_obj)) and owner != request.username


def _plan_update(policy: Policy, request: AdmissionRequest) -> _Plan:
    """UPDATE by a non-privileged identity: system keys carried over from the old object;
    user keys absent from the request keep their value, explicit new values are changes."""
    keys = policy.keys
    old_labels, old_annotations = _maps(request.old_obj)
    labels, annotations = _maps(request.obj)
    rule_id = old_labels.get(keys.rule)
    rule = policy.rule_by_id(rule_id) if rule_id else None
    child = _is_child(policy, rule, request)
    wanted_labels: dict[str, str | None] = {k: old_labels.get(k) for k in keys.labels}
    wanted_annotations: dict[str, str | None] = {
        k: old_annotations.get(k) for k in keys.annotations
    }
    never = "system keys never change after creation"
    why = dict.fromkeys((*keys.labels, *keys.annotations), never)
    problems: list[str] = []
    changed: set[str] = set()
    for key in keys.user_annotations:
        sent, old = annotations.get(key), old_annotations.get(key)
        if sent is None or sent == old:
            why[key] = "a key absent from an update keeps its value; send a new value to change it"
            continue
        if rule is None:
            why[key] = (
                f"this object is not governed by a rule of this policy (rule "
                f"{_shown(rule_id)}), so its warden keys do not change"
            )
            continue
        if child:
            why[key] = (
                f"only the owner changes it on a {request.kind} made for a managed parent; "
                "values copied from the parent are dropped"
            )
            continue
        found = (
            _check_keep(keys, sent, rule)
            if key == keys.keep
            else duration_problems(key, sent, rule)
        )
        problems += found
        wanted_annotations[key] = sent
        if not found:
            changed.add(key)
    if keys.ttl in changed:
        created = parse_time(old_annotations.get(keys.created_at))
        ttl = parse_duration(annotations[keys.ttl])
        if created is None:
            problems.append(
                f"annotation {keys.ttl}: cannot be changed: this object has no valid "
                f"{keys.created_at} to count it from"
            )
        else:
            wanted_annotations[keys.expires_at] = format_time(created + ttl)
            why[keys.expires_at] = f"{keys.created_at} + the new {keys.ttl}"
    native: tuple[dict[str, Any], ...] = ()
    # A status update cannot change spec: only a main-resource update moves a native TTL.
    if rule is not None and isinstance(request.old_obj, Mapping) and not request.sub_resource:
        assert request.obj is not None  # checked by _skip_reason
        native = _native_follows(
            request.old_obj,
            request.obj,
            old_annotations.get(keys.ttl_after_finished),
            wanted_annotations[keys.ttl_after_finished],
        )
    warnings: tuple[str, ...] = ()
    if not child:
        warnings = _replaced(
            [
                (f"label {k}", labels.get(k), old_labels.get(k), wanted_labels[k])
                for k in keys.labels
            ]
            + [
                (
                    f"annotation {k}",
                    annotations.get(k),
                    old_annotations.get(k),
                    wanted_annotations[k],
                )
                for k in keys.annotations
            ],
            "kaptain-warden kept {key} {kept} instead of {sent}: warden keys do not change "
            "this way after creation",
        )
    return _Plan(
        rule,
        wanted_labels,
        wanted_annotations,
        why,
        native=native,
        problems=tuple(problems),
        warnings=warnings,
    )


def _sync_ops(
    metadata: Mapping[str, Any], section: str, wanted: Mapping[str, str | None]
) -> list[dict[str, Any]]:
    """Operations that make metadata[section] hold exactly `wanted` for its keys."""
    current = metadata.get(section)
    if not isinstance(current, Mapping):
        present = {k: v for k, v in wanted.items() if v is not None}
        # Adding at /metadata/labels replaces the whole map: only when there is no map at all.
        return [{"op": "add", "path": f"/metadata/{section}", "value": present}] if present else []
    ops: list[dict[str, Any]] = []
    for key, value in wanted.items():
        path = f"/metadata/{section}/{_escape(key)}"
        if value is None:
            if key in current:
                ops.append({"op": "remove", "path": path})
        elif current.get(key) != value:
            # `add` on an existing member replaces it (RFC 6902, 4.1).
            ops.append({"op": "add", "path": path, "value": value})
    return ops


def _plan_patch(obj: Mapping[str, Any], plan: _Plan) -> list[dict[str, Any]]:
    metadata = obj.get("metadata")
    if isinstance(metadata, Mapping):
        ops = _sync_ops(metadata, "labels", plan.labels)
        ops += _sync_ops(metadata, "annotations", plan.annotations)
    else:
        value = {
            "labels": {k: v for k, v in plan.labels.items() if v is not None},
            "annotations": {k: v for k, v in plan.annotations.items() if v is not None},
        }
        ops = [{"op": "add", "path": "/metadata", "value": value}] if any(value.values()) else []
    return ops + list(plan.native)


def plan_mutation(
    *,
    policy: Policy,
    request: AdmissionRequest,
    now: datetime,
    inherited_owner: str | None = None,
    namespace_labels: Mapping[str, str] | None = None,
    provenance: Provenance = NO_PROVENANCE,
    inherited_provenance: Provenance | None = None,
) -> Mutation:
    """The mutating webhook's decision (the metadata contract in the README).

    CREATE: system keys computed whatever the request carries; user keys honoured (a person)
    or dropped (a controller-made child). UPDATE: system keys carried over from the old
    object, user keys absent from the request restored. Privileged identities: CREATE only
    fills in missing keys (restores keep theirs), UPDATE is left alone.
    """
    skip = _skip_reason(policy, request)
    if skip is not None:
        return Mutation(None, (), skip)
    assert request.obj is not None  # checked by _skip_reason
    privileged = policy.is_privileged(request.username, request.groups)
    if request.operation == "UPDATE":
        if privileged:
            return Mutation(None, (), f"{request.username} is a privileged identity")
        plan = _plan_update(policy, request)
    else:
        rule = find_rule(
            policy,
            request.subject(inherited_owner=inherited_owner, namespace_labels=namespace_labels),
        )
        if privileged:
            if rule is None:
                return Mutation(None, (), "no rule matches")
            stamp = plan_stamp(
                policy=policy,
                rule=rule,
                obj=request.obj,
                owner=expected_owner(request, inherited_owner, rule),
                now=now,
            )
            patch = stamp_patch(request.obj, stamp)
            return Mutation(rule, tuple(patch), f"rule {rule.id}: privileged, missing keys added")
        if rule is None:
            plan = _plan_ungoverned(policy.keys, request)
        else:
            plan = _plan_create(
                policy,
                request,
                rule,
                inherited_owner=inherited_owner,
                created=_mutator_created_at(request.obj, policy.keys, now),
                provenance=provenance,
                inherited_provenance=inherited_provenance,
            )
    ops = tuple(_plan_patch(request.obj, plan))
    subject = f"rule {plan.rule.id}" if plan.rule is not None else "no rule"
    return Mutation(
        plan.rule,
        ops,
        f"{subject}: {len(ops)} operations" if ops else f"{subject}: nothing to change",
        warnings=plan.warnings,
    )


def _describe(key: str, value: str | None) -> str:
    return "absent" if value is None else f'"{value}"'


def duration_problems(key: str, value: str | None, rule: Rule) -> list[str]:
    """Why a user-set duration annotation (`ttl`, `ttl-after-finished`) is refused, if it is;
    `kaptain-warden extend` asks it too, so both refuse in the same words."""
    if value is None:
        return []
    try:
        parsed = parse_duration(value)
    except DurationError as exc:
        return [f"annotation {key}: {exc}"]
    if parsed > rule.max_ttl:
        limit = format_duration(rule.max_ttl)
        return [
            f'annotation {key}: "{value}" is above the maximum of {limit} that rule '
            f'"{rule.id}" allows; use a duration up to {limit} ({ACCEPTED})'
        ]
    return []


def _check_keep(keys: MetadataKeys, value: str | None, rule: Rule | None) -> list[str]:
    if value is None or value == "false":
        return []
    if value != "true":
        return [f'annotation {keys.keep}: "{value}" is not allowed; use "true" or "false"']
    if rule is None or not rule.allow_keep:
        name = f'rule "{rule.id}"' if rule is not None else "no rule"
        return [
            f'annotation {keys.keep}: "true" is not allowed by {name}; remove it or set "false" '
            "(only rules with allowKeep: true honour it)"
        ]
    return []


def _differences(policy: Policy, request: AdmissionRequest, plan: _Plan) -> list[str]:
    """Every warden key of the (mutated) request that is not what the plan says it must be."""
    labels, annotations = _maps(request.obj)
    found = []
    for section, actual, wanted in (
        ("label", labels, plan.labels),
        ("annotation", annotations, plan.annotations),
    ):
        for key, value in wanted.items():
            if key in plan.unchecked or (key in plan.optional and key not in actual):
                continue
            if actual.get(key) != value:
                must = "must be absent" if value is None else f'must be "{value}"'
                found.append(
                    f"{section} {key}: {_describe(key, actual.get(key))} {must} ({plan.why[key]})"
                )
    return found


def check_admission(
    *,
    policy: Policy,
    request: AdmissionRequest,
    now: datetime,
    inherited_owner: str | None = None,
    namespace_labels: Mapping[str, str] | None = None,
    parent_lookup_failed: bool = False,
    provenance: Provenance = NO_PROVENANCE,
    inherited_provenance: Provenance | None = None,
) -> Verdict:
    """The validating webhook's decision: the backstop behind the mutator.

    Denies a request whose warden keys, after mutation, differ from what the warden computes
    (CREATE) or from the old object (UPDATE), and user keys out of the rule's limits.
    `parent_lookup_failed`: the object names parents that could not be read; it then
    inherits nothing (the owner is the requester) and a denial says why.
    """
    skip = _skip_reason(policy, request)
    if skip is not None:
        return Verdict(True, skip)
    if policy.is_privileged(request.username, request.groups):
        return Verdict(True, f"{request.username} is a privileged identity")
    keys = policy.keys
    if request.operation == "UPDATE":
        plan = _plan_update(policy, request)
        found = list(plan.problems)
        found += [p for p in _differences(policy, request, plan) if not _named(p, found)]
        return Verdict(not found, "; ".join(found) or "warden metadata carried over", plan.rule)
    rule = find_rule(
        policy, request.subject(inherited_owner=inherited_owner, namespace_labels=namespace_labels)
    )
    labels, annotations = _maps(request.obj)
    carried = [f"label {k}" for k in keys.labels if k in labels]
    carried += [f"annotation {k}" for k in keys.annotations if k in annotations]
    if rule is None:
        if carried:
            unread = (
                f" (its parents could not be read, so this {request.kind} inherits no owner)"
                if parent_lookup_failed
                else ""
            )
            return Verdict(
                False,
                f"{', '.join(sorted(carried))}: this object is not governed by any "
                f"kaptain-warden rule{unread}, so it must not carry warden metadata; remove "
                "these keys from your manifest",
            )
        return Verdict(True, "no rule matches")
    if not carried:
        return Verdict(
            True,
            f"rule {rule.id}: not stamped",
            rule,
            warnings=(
                f"kaptain-warden did not stamp this {request.kind} (the mutating webhook did "
                "not run); the sweeper's backfill stamps it later",
            ),
        )
    problems: list[str] = []
    created = parse_time(annotations.get(keys.created_at))
    if created is None or abs(now - created) > CLOCK_TOLERANCE:
        problems.append(
            f"annotation {keys.created_at}: "
            f"{_describe(keys.created_at, annotations.get(keys.created_at))} "
            "must be the creation time (the warden sets it: remove it from your manifest)"
        )
    plan = _plan_create(
        policy,
        request,
        rule,
        inherited_owner=inherited_owner,
        created=created or now,
        provenance=provenance,
        inherited_provenance=inherited_provenance,
    )
    problems += plan.problems
    problems += [
        p
        for p in _differences(policy, request, plan)
        if not _named(p, problems) and not p.startswith(f"annotation {keys.created_at}:")
    ]
    short = (
        None
        if problems
        else creation_warning(obj=request.obj or {}, policy=policy, rule=rule, now=now)
    )
    return Verdict(
        not problems,
        "; ".join(problems) or f"rule {rule.id}: metadata valid",
        rule,
        warnings=(short,) if short else (),
    )


def _named(problem: str, problems: Sequence[str]) -> bool:
    """True when `problem` is about a key some entry of `problems` already names."""
    key = problem.partition(":")[0]
    return any(p.startswith(f"{key}:") for p in problems)
