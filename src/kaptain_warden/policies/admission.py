"""Admission decisions: what the mutating webhook stamps and what the validating one denies."""

from __future__ import annotations

from collections.abc import Mapping
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
from kaptain_warden.policies.kinds import known_kind
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.policies.model import Policy, Rule
from kaptain_warden.policies.owner import owner_label_value
from kaptain_warden.policies.timestamps import format_time, parse_time

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
# A created-at further than this from the validator's clock was not written by our mutator.
CLOCK_TOLERANCE = timedelta(minutes=5)
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

    Used by the mutating webhook on CREATE and by the sweeper's backfill. Keys the object
    already carries are reported as they are: the mutator adds only what is missing, so a
    forged value is left for the validator to deny, and a second invocation adds nothing.
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
    if request.sub_resource:
        return f"subresource {request.sub_resource} is not governed"
    if request.operation in ("DELETE", "CONNECT"):
        return f"{request.operation} is not governed"
    if is_excluded_namespace(policy, request.namespace):
        return f"namespace {request.namespace or '(cluster scope)'} is excluded"
    if not isinstance(request.obj, Mapping):
        return "the request carries no object"
    return None


def plan_mutation(
    *,
    policy: Policy,
    request: AdmissionRequest,
    now: datetime,
    inherited_owner: str | None = None,
    namespace_labels: Mapping[str, str] | None = None,
) -> Mutation:
    """The mutating webhook's decision: stamp a governed object on CREATE, else no patch."""
    skip = _skip_reason(policy, request)
    if skip is not None:
        return Mutation(None, (), skip)
    if request.operation != "CREATE":
        return Mutation(None, (), "only CREATE is stamped; the owner never changes afterwards")
    rule = find_rule(
        policy, request.subject(inherited_owner=inherited_owner, namespace_labels=namespace_labels)
    )
    if rule is None:
        return Mutation(None, (), "no rule matches")
    assert request.obj is not None  # checked by _skip_reason
    stamp = plan_stamp(
        policy=policy,
        rule=rule,
        obj=request.obj,
        owner=expected_owner(request, inherited_owner, rule),
        now=now,
    )
    patch = stamp_patch(request.obj, stamp)
    return Mutation(
        rule, tuple(patch), f"rule {rule.id}" if patch else f"rule {rule.id}: already stamped"
    )


def _describe(key: str, value: str | None) -> str:
    return "absent" if value is None else f'"{value}"'


def _check_duration(keys: MetadataKeys, key: str, value: str | None, rule: Rule) -> list[str]:
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
            f'annotation {keys.keep}: "true" is not allowed by {name}; remove it '
            "(only rules with allowKeep: true honour it)"
        ]
    return []


def _check_created(
    policy: Policy, request: AdmissionRequest, rule: Rule, owner: str | None, now: datetime
) -> list[str]:
    """Problems with the warden metadata of a new object; `owner` None: not judged."""
    keys = policy.keys
    assert request.obj is not None
    metadata = request.obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    labels = _string_map(metadata, "labels")
    annotations = _string_map(metadata, "annotations")
    problems: list[str] = []
    if owner is not None and annotations.get(keys.owner) != owner:
        problems.append(
            f"annotation {keys.owner}: {_describe(keys.owner, annotations.get(keys.owner))} is not "
            f'the owner of this object; it must be "{owner}" '
            "(the warden sets it: remove it from your manifest)"
        )
    expected_labels = {keys.managed: "true", keys.rule: rule.id}
    if owner is not None:
        expected_labels[keys.owner] = owner_label_value(owner)
    for key, value in expected_labels.items():
        if labels.get(key) != value:
            problems.append(f'label {key}: {_describe(key, labels.get(key))} must be "{value}"')
    created = parse_time(annotations.get(keys.created_at))
    if created is None or abs(now - created) > CLOCK_TOLERANCE:
        problems.append(
            f"annotation {keys.created_at}: "
            f"{_describe(keys.created_at, annotations.get(keys.created_at))} must be the "
            "creation time (the warden sets it: remove it from your manifest)"
        )
    problems += _check_duration(keys, keys.ttl, annotations.get(keys.ttl), rule)
    problems += _check_duration(
        keys, keys.ttl_after_finished, annotations.get(keys.ttl_after_finished), rule
    )
    ttl = _user_duration(annotations.get(keys.ttl), rule)
    expires = annotations.get(keys.expires_at)
    if (
        created is not None
        and ttl is not None
        and parse_time(expires) != parse_time(format_time(created + ttl))
    ):
        problems.append(
            f"annotation {keys.expires_at}: {_describe(keys.expires_at, expires)} must be "
            f'"{format_time(created + ttl)}" ({keys.created_at} + {keys.ttl}; the warden sets it)'
        )
    if expires is not None and keys.ttl not in annotations:
        problems.append(
            f"annotation {keys.expires_at}: only the warden sets it, from {keys.ttl}; remove it"
        )
    problems += _check_keep(keys, annotations.get(keys.keep), rule)
    return problems


def _warden_values(keys: MetadataKeys, obj: Mapping[str, Any] | None) -> dict[str, str | None]:
    """Every warden key of an object (labels as `label k`, annotations as `annotation k`)."""
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    metadata = metadata if isinstance(metadata, Mapping) else {}
    labels = _string_map(metadata, "labels")
    annotations = _string_map(metadata, "annotations")
    values: dict[str, str | None] = {f"label {k}": labels.get(k) for k in keys.labels}
    values.update(
        {f"annotation {k}": annotations.get(k) for k in keys.annotations if k != keys.keep}
    )
    return values


def _check_updated(policy: Policy, request: AdmissionRequest) -> list[str]:
    keys = policy.keys
    old = _warden_values(keys, request.old_obj)
    new = _warden_values(keys, request.obj)
    problems = []
    for key, before in old.items():
        after = new[key]
        if before == after:
            continue
        if before is None:
            change = f'adding it as "{after}"'
        elif after is None:
            change = f'removing "{before}"'
        else:
            change = f'changing "{before}" to "{after}"'
        problems.append(f"{key} is immutable after creation; the update tries {change}")
    old_meta = request.old_obj.get("metadata") if isinstance(request.old_obj, Mapping) else None
    new_meta = request.obj.get("metadata") if isinstance(request.obj, Mapping) else None
    old_keep = _string_map(old_meta if isinstance(old_meta, Mapping) else {}, "annotations").get(
        keys.keep
    )
    new_keep = _string_map(new_meta if isinstance(new_meta, Mapping) else {}, "annotations").get(
        keys.keep
    )
    if new_keep != old_keep:
        rule_id = new.get(f"label {keys.rule}")
        rule = policy.rule_by_id(rule_id) if rule_id else None
        problems += _check_keep(keys, new_keep, rule)
    return problems


def check_admission(
    *,
    policy: Policy,
    request: AdmissionRequest,
    now: datetime,
    inherited_owner: str | None = None,
    namespace_labels: Mapping[str, str] | None = None,
    parent_lookup_failed: bool = False,
) -> Verdict:
    """The validating webhook's decision: keep warden metadata honest.

    `parent_lookup_failed`: the object names parents that could not be read, so an owner it
    may have inherited is unknown. Its owner is then not judged (with a warning) rather than
    denied: a failed lookup must never block an admission.
    """
    skip = _skip_reason(policy, request)
    if skip is not None:
        return Verdict(True, skip)
    if policy.is_privileged(request.username, request.groups):
        return Verdict(True, f"{request.username} is a privileged identity")
    keys = policy.keys
    if request.operation == "UPDATE":
        problems = _check_updated(policy, request)
        return Verdict(not problems, "; ".join(problems) or "warden metadata unchanged")
    rule = find_rule(
        policy, request.subject(inherited_owner=inherited_owner, namespace_labels=namespace_labels)
    )
    carried = {k: v for k, v in _warden_values(keys, request.obj).items() if v is not None}
    unverified = (
        f"kaptain-warden could not read the parents of this {request.kind}, so its inherited "
        "owner was not verified"
    )
    if rule is None:
        if carried and parent_lookup_failed:
            return Verdict(True, "parents unreadable: owner not verified", warnings=(unverified,))
        if carried:
            names = ", ".join(sorted(carried))
            return Verdict(
                False,
                f"{names}: this object is not governed by any kaptain-warden rule, so it must not "
                "carry warden metadata; remove these keys from your manifest",
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
    owner_unknown = parent_lookup_failed and rule.match.inherit
    owner = None if owner_unknown else expected_owner(request, inherited_owner, rule)
    problems = _check_created(policy, request, rule, owner, now)
    return Verdict(
        not problems,
        "; ".join(problems) or f"rule {rule.id}: metadata valid",
        rule,
        warnings=(unverified,) if owner_unknown and not problems else (),
    )
