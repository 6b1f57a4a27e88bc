"""Validation: the validating webhook's decision, the backstop behind the mutator.

It denies a request whose warden keys, after mutation, differ from the metadata contract
(`contract`), and user keys out of the rule's limits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kaptain_warden.policies.contract import (
    Plan,
    plan_create,
    plan_update,
    shown,
    skip_reason,
)
from kaptain_warden.policies.evaluate import find_rule
from kaptain_warden.policies.expiry_warnings import creation_warning
from kaptain_warden.policies.model import Policy, Rule
from kaptain_warden.policies.provenance import NO_PROVENANCE, Provenance
from kaptain_warden.policies.requests import AdmissionRequest
from kaptain_warden.policies.timestamps import parse_time

# A created-at further than this from the validator's clock was not written by our mutator.
CLOCK_TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True)
class Validation:
    """The validating webhook's answer."""

    allowed: bool
    message: str
    rule: Rule | None = None
    warnings: tuple[str, ...] = field(default=())


def _differences(
    labels: Mapping[str, str], annotations: Mapping[str, str], plan: Plan
) -> list[str]:
    """Every warden key of the (mutated) request, whose `labels` and `annotations` these are,
    that is not what the plan says it must be."""
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
                found.append(f"{section} {key}: {shown(actual.get(key))} {must} ({plan.why[key]})")
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
) -> Validation:
    """The validating webhook's decision: the backstop behind the mutator.

    Denies a request whose warden keys, after mutation, differ from what the warden computes
    (CREATE) or from the old object (UPDATE), and user keys out of the rule's limits.
    `parent_lookup_failed`: the object names parents that could not be read; it then
    inherits nothing (the owner is the requester) and a denial says why.
    """
    skip = skip_reason(policy, request)
    if skip is not None:
        return Validation(True, skip)
    if policy.is_privileged(request.username, request.groups):
        return Validation(True, f"{request.username} is a privileged identity")
    keys = policy.keys
    if request.operation == "UPDATE":
        plan = plan_update(policy, request)
        found = list(plan.problems)
        labels, annotations = request.maps
        found += [p for p in _differences(labels, annotations, plan) if not _named(p, found)]
        return Validation(not found, "; ".join(found) or "warden metadata carried over", plan.rule)
    rule = find_rule(
        policy, request.subject(inherited_owner=inherited_owner, namespace_labels=namespace_labels)
    )
    labels, annotations = request.maps
    carried = [f"label {k}" for k in keys.labels if k in labels]
    carried += [f"annotation {k}" for k in keys.annotations if k in annotations]
    if rule is None:
        if carried:
            unread = (
                f" (its parents could not be read, so this {request.kind} inherits no owner)"
                if parent_lookup_failed
                else ""
            )
            return Validation(
                False,
                f"{', '.join(sorted(carried))}: this object is not governed by any "
                f"kaptain-warden rule{unread}, so it must not carry warden metadata; remove "
                "these keys from your manifest",
            )
        return Validation(True, "no rule matches")
    if not carried:
        return Validation(
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
            f"{shown(annotations.get(keys.created_at))} "
            "must be the creation time (the warden sets it: remove it from your manifest)"
        )
    plan = plan_create(
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
        for p in _differences(labels, annotations, plan)
        if not _named(p, problems) and not p.startswith(f"annotation {keys.created_at}:")
    ]
    short = (
        None
        if problems
        else creation_warning(obj=request.obj or {}, policy=policy, rule=rule, now=now)
    )
    return Validation(
        not problems,
        "; ".join(problems) or f"rule {rule.id}: metadata valid",
        rule,
        warnings=(short,) if short else (),
    )


def _named(problem: str, problems: Sequence[str]) -> bool:
    """True when `problem` is about a key some entry of `problems` already names."""
    key = problem.partition(":")[0]
    return any(p.startswith(f"{key}:") for p in problems)
