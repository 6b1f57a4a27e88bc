"""The metadata contract: what an object's warden keys must be once admitted.

System keys (`managed`, `owner`, `rule`, `created-at`, `expires-at`) are the warden's alone,
computed on CREATE and carried over on UPDATE whatever the request sends; user keys (`ttl`,
`ttl-after-finished`, `keep`) are a person's, honoured within the rule's limits and changed
only by an explicit new value. The mutator (`stamping`) patches an object to its plan; the
validator (`validation`) denies one that differs from it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from kaptain_warden.policies.durations import (
    ACCEPTED,
    DurationError,
    format_duration,
    parse_duration,
)
from kaptain_warden.policies.evaluate import is_excluded_namespace
from kaptain_warden.policies.inheritance import parent_refs
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.policies.model import Policy, Rule
from kaptain_warden.policies.native_ttl import native_follows, native_ttl
from kaptain_warden.policies.objects import metadata_maps
from kaptain_warden.policies.owner import owner_label_value
from kaptain_warden.policies.provenance import NO_PROVENANCE, Provenance
from kaptain_warden.policies.requests import AdmissionRequest
from kaptain_warden.policies.timestamps import format_time, parse_time


@dataclass(frozen=True)
class Plan:
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


def _user_duration_or(value: str | None, rule: Rule, default: timedelta | None) -> timedelta | None:
    parsed = user_duration(value, rule)
    return parsed if parsed is not None else default


def shown(value: str | None) -> str:
    """A key's value as a message names it."""
    return "absent" if value is None else f'"{value}"'


def _replaced(
    changes: Iterable[tuple[str, str | None, str | None, str | None]], template: str
) -> tuple[str, ...]:
    """Warnings for the values a request sent that differ from both the old and the kept one.

    `changes` holds (key, sent, old, kept); a key absent from the request is not a change.
    """
    return tuple(
        template.format(key=key, sent=shown(sent), kept=shown(kept))
        for key, sent, old, kept in changes
        if sent is not None and sent not in (kept, old)
    )


def user_duration(value: str | None, rule: Rule) -> timedelta | None:
    """A user-requested duration, when it parses and is within the rule's maxTtl."""
    if value is None:
        return None
    try:
        parsed = parse_duration(value)
    except DurationError:
        return None
    return parsed if parsed <= rule.max_ttl else None


def expected_owner(request: AdmissionRequest, inherited_owner: str | None, rule: Rule) -> str:
    """Who owns a new object: the managed parent's owner if it inherits, else the requester."""
    if rule.match.inherit and inherited_owner is not None:
        return inherited_owner
    return request.username


def skip_reason(policy: Policy, request: AdmissionRequest) -> str | None:
    """Why neither webhook judges this request, or None when it is judged."""
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


def plan_ungoverned(keys: MetadataKeys, request: AdmissionRequest) -> Plan:
    """No rule governs the object: a non-privileged request carries no warden key."""
    labels, annotations = request.maps
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
    return Plan(
        None,
        dict.fromkeys(keys.labels),
        dict.fromkeys(keys.annotations),
        dict.fromkeys((*keys.labels, *keys.annotations), "no rule governs this object"),
        warnings=warnings,
    )


def plan_create(
    policy: Policy,
    request: AdmissionRequest,
    rule: Rule,
    *,
    inherited_owner: str | None,
    created: datetime,
    provenance: Provenance = NO_PROVENANCE,
    inherited_provenance: Provenance | None = None,
) -> Plan:
    """CREATE by a non-privileged identity: the system keys computed, whatever was sent.

    Provenance is the request's Pod (and what lookups found about it), or for a
    controller-made child its managed parent's: a controller's own Pod is never a creator.
    """
    keys = policy.keys
    assert request.obj is not None  # checked by skip_reason
    labels, annotations = request.maps
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
    # The rule's own default is taken as it is (parsing its canonical string gives it back).
    ttl = rule.ttl if ttl_value is rule_ttl else _user_duration_or(ttl_value, rule, rule.ttl)
    after = (
        rule.ttl_after_finished
        if after_value is rule_after
        else _user_duration_or(after_value, rule, rule.ttl_after_finished)
    )
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
        }
    )
    wanted_annotations.update(origin.annotations(keys))
    native = tuple(
        {"op": "add", "path": path, "value": value}
        for path, value in (
            native_ttl(request.obj, int(after.total_seconds())) if after is not None else ()
        )
    )
    why = _create_why(keys, rule.id, request.kind if inherits else None)
    warnings: tuple[str, ...] = ()
    if not inherits:
        # Only the keys the request sent can be replaced (most requests send none).
        warnings = _replaced(
            [(f"label {k}", labels[k], None, wanted_labels[k]) for k in keys.labels if k in labels]
            + [
                (f"annotation {k}", annotations[k], None, wanted_annotations[k])
                for k in keys.annotations
                if k in annotations and k not in keys.user_annotations
            ],
            "kaptain-warden replaced {key} {sent} with {kept}: the warden computes its "
            "system keys on creation",
        )
    return Plan(
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


@functools.lru_cache(maxsize=256)
def _create_why(keys: MetadataKeys, rule_id: str, child_kind: str | None) -> Mapping[str, str]:
    """Why each key of a CREATE's plan has its value (read by the validator's denials only):
    the same for every CREATE under one rule, so built once per rule (and, for a
    controller-made child, per kind: governed kinds only, so the cache stays small).
    `child_kind`: the kind of a child that inherits from its managed parent, else None."""
    inherits = child_kind is not None
    why = dict.fromkeys((*keys.labels, *keys.annotations), "the warden sets it")
    why[keys.owner] = "the owner inherited from its managed parent" if inherits else "the requester"
    why[keys.expires_at] = f"{keys.created_at} + {keys.ttl}; the warden sets it"
    source = "its managed parent's" if inherits else "the Pod of the requester's bound token"
    why.update(
        dict.fromkeys(
            NO_PROVENANCE.annotations(keys), f"provenance: {source}; absent when there is none"
        )
    )
    why.update(
        dict.fromkeys(
            keys.user_annotations,
            f"a {child_kind} made for a managed parent follows its own rule {rule_id}"
            if inherits
            else f"the default of rule {rule_id} when the manifest sets none",
        )
    )
    return MappingProxyType(why)


def _unresolved(keys: MetadataKeys, provenance: Provenance) -> frozenset[str]:
    """The provenance keys whose lookup failed (the notebook's label goes with its annotation)."""
    return frozenset(k for k in (keys.notebook, keys.profile_owner) if k in provenance.unresolved)


def _is_child(policy: Policy, rule: Rule | None, request: AdmissionRequest) -> bool:
    """An update of a controller-made child, sent by someone other than its owner: a
    controller re-applying what it copies from the parent."""
    if rule is None or not rule.match.inherit or not isinstance(request.old_obj, Mapping):
        return False
    owner = metadata_maps(request.old_obj)[1].get(policy.keys.owner)
    return bool(parent_refs(request.old_obj)) and owner != request.username


def plan_update(policy: Policy, request: AdmissionRequest) -> Plan:
    """UPDATE by a non-privileged identity: system keys carried over from the old object;
    user keys absent from the request keep their value, explicit new values are changes."""
    keys = policy.keys
    old_labels, old_annotations = metadata_maps(request.old_obj)
    labels, annotations = request.maps
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
                f"{shown(rule_id)}), so its warden keys do not change"
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
        assert request.obj is not None  # checked by skip_reason
        native = native_follows(
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
    return Plan(
        rule,
        wanted_labels,
        wanted_annotations,
        why,
        native=native,
        problems=tuple(problems),
        warnings=warnings,
    )


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
