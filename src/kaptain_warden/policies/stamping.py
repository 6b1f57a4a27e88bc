"""Stamping: the warden metadata a governed object gets, as RFC 6902 operations.

`plan_mutation` is the mutating webhook's decision (the metadata contract, `contract`);
`plan_stamp` and `stamp_patch` fill in what a governed object lacks, for the sweeper's
backfill and for CREATEs by privileged identities (restores, migrations).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kaptain_warden.policies.contract import (
    Plan,
    expected_owner,
    plan_create,
    plan_ungoverned,
    plan_update,
    skip_reason,
    user_duration,
)
from kaptain_warden.policies.durations import format_duration
from kaptain_warden.policies.evaluate import find_rule
from kaptain_warden.policies.kinds.paths import json_pointer
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.policies.model import Policy, Rule
from kaptain_warden.policies.native_ttl import native_ttl
from kaptain_warden.policies.objects import metadata_maps
from kaptain_warden.policies.owner import owner_label_value
from kaptain_warden.policies.provenance import NO_PROVENANCE, Provenance
from kaptain_warden.policies.requests import AdmissionRequest
from kaptain_warden.policies.timestamps import format_time, parse_time

# A created-at this close to now on a CREATE is taken for the mutator's own, written by an
# earlier invocation of the same request (a reinvocation comes within the same request, in
# milliseconds): kept, so that a reinvocation changes nothing. Anything older is replaced.
REINVOCATION_WINDOW = timedelta(seconds=10)


@dataclass(frozen=True)
class Mutation:
    """The mutating webhook's answer: the matched rule and RFC 6902 operations (maybe none)."""

    rule: Rule | None
    patch: tuple[dict[str, Any], ...]
    reason: str
    # Values a person sent that the patch replaces (the response's `warnings`).
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Stamp:
    """The warden metadata an object should carry, and native TTL fields to fill in."""

    labels: dict[str, str]
    annotations: dict[str, str]
    # (JSON pointer, value) pairs for native TTL fields the object does not set.
    native: tuple[tuple[str, Any], ...] = ()


def plan_stamp(
    *, policy: Policy, rule: Rule, obj: Mapping[str, Any], owner: str, now: datetime
) -> Stamp:
    """The full warden metadata for a governed object, honouring valid user-set values.

    Used by the sweeper's backfill and for CREATEs by privileged identities (restores,
    migrations): keys the object already carries are reported as they are, so only what is
    missing is added.
    """
    keys = policy.keys
    annotations = metadata_maps(obj)[1]
    created = parse_time(annotations.get(keys.created_at)) or now
    labels = {
        keys.managed: "true",
        keys.owner: owner_label_value(owner),
        keys.rule: rule.id,
    }
    wanted = {keys.owner: owner, keys.created_at: format_time(created)}
    # A valid user-set value is kept as written; an unusable one is replaced by the rule's
    # (the validator denies it with a message, the stamp never trusts it).
    ttl = user_duration(annotations.get(keys.ttl), rule)
    if ttl is not None:
        wanted[keys.ttl] = annotations[keys.ttl]
    elif rule.ttl is not None:
        ttl = rule.ttl
        wanted[keys.ttl] = format_duration(ttl)
    if ttl is not None:
        wanted[keys.expires_at] = format_time(created + ttl)
    after = user_duration(annotations.get(keys.ttl_after_finished), rule)
    if after is not None:
        wanted[keys.ttl_after_finished] = annotations[keys.ttl_after_finished]
    elif rule.ttl_after_finished is not None:
        after = rule.ttl_after_finished
        wanted[keys.ttl_after_finished] = format_duration(after)
    native = native_ttl(obj, int(after.total_seconds())) if after is not None else ()
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
        {"op": "add", "path": _member_path(section, k), "value": v}
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


def _mutator_created_at(
    annotations: Mapping[str, str], keys: MetadataKeys, now: datetime
) -> datetime:
    """The creation time the mutator stamps: now, unless this very request was stamped a
    moment ago (a reinvocation after another webhook changed the object: no new patch).

    Nothing else tells a reinvocation from a copied or exported value: the API server wipes
    `creationTimestamp` and `uid` before the mutating webhooks run. A value within
    REINVOCATION_WINDOW of now is, for every expiry, the same as now.
    """
    created = parse_time(annotations.get(keys.created_at))
    if created is not None and abs(now - created) <= REINVOCATION_WINDOW:
        return created
    return now


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
        if value is None:
            if key in current:
                ops.append({"op": "remove", "path": _member_path(section, key)})
        elif current.get(key) != value:
            # `add` on an existing member replaces it (RFC 6902, 4.1).
            ops.append({"op": "add", "path": _member_path(section, key), "value": value})
    return ops


# The keys are the policy's own (a plan holds no other), so the cache stays small.
@functools.lru_cache(maxsize=256)
def _member_path(section: str, key: str) -> str:
    """The JSON Pointer of metadata[section][key]."""
    return json_pointer("metadata", section, key)


def _plan_patch(obj: Mapping[str, Any], plan: Plan) -> list[dict[str, Any]]:
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
    """The mutating webhook's decision (docs/policy-authors/metadata-contract.md).

    CREATE: system keys computed whatever the request carries; user keys honoured (a person)
    or dropped (a controller-made child). UPDATE: system keys carried over from the old
    object, user keys absent from the request restored. Privileged identities: CREATE only
    fills in missing keys (restores keep theirs), UPDATE is left alone.
    """
    skip = skip_reason(policy, request)
    if skip is not None:
        return Mutation(None, (), skip)
    assert request.obj is not None  # checked by skip_reason
    privileged = policy.is_privileged(request.username, request.groups)
    if request.operation == "UPDATE":
        if privileged:
            return Mutation(None, (), f"{request.username} is a privileged identity")
        plan = plan_update(policy, request)
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
            plan = plan_ungoverned(policy.keys, request)
        else:
            plan = plan_create(
                policy,
                request,
                rule,
                inherited_owner=inherited_owner,
                created=_mutator_created_at(request.maps[1], policy.keys, now),
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
