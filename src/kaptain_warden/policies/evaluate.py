"""Which rule governs an object: pure matching of a request's facts against the policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kaptain_warden.policies.model import Match, Policy, Rule


@dataclass(frozen=True)
class Subject:
    """The facts a rule is matched against, decoded from a request or a listed object."""

    api_version: str
    kind: str
    namespace: str
    obj: Mapping[str, Any]
    username: str = ""
    groups: tuple[str, ...] = ()
    # Labels of the object's namespace; None when they were not looked up.
    namespace_labels: Mapping[str, str] | None = None
    # The owner inherited from a managed parent, when there is one
    # (docs/policy-authors/metadata-contract.md, owner).
    inherited_owner: str | None = None
    metadata: Mapping[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        metadata = self.obj.get("metadata") if isinstance(self.obj, Mapping) else None
        object.__setattr__(self, "metadata", metadata if isinstance(metadata, Mapping) else {})

    @property
    def name(self) -> str:
        """The object's name, or its generateName prefix when the name is not set yet."""
        return str(self.metadata.get("name") or self.metadata.get("generateName") or "")

    @property
    def labels(self) -> Mapping[str, str]:
        """The object's labels (empty when absent or malformed)."""
        labels = self.metadata.get("labels")
        return labels if isinstance(labels, Mapping) else {}


def is_excluded_namespace(policy: Policy, namespace: str) -> bool:
    """True for namespaces the warden never touches (and for cluster-scoped objects)."""
    return not namespace or namespace in policy.settings.all_excluded_namespaces


def _matches_who(match: Match, subject: Subject) -> bool:
    if match.inherit and subject.inherited_owner is not None:
        return True
    if match.users and not match.users.matches(subject.username):
        return False
    return not match.groups or any(match.groups.matches(g) for g in subject.groups)


def _matches(rule: Rule, subject: Subject, *, who: bool = True) -> bool:
    """`who`: also match the requester (users, groups, inheritance); False matches the
    object's own facts only."""
    match = rule.match
    if not rule.governs_kind(subject.api_version, subject.kind):
        return False
    if match.namespaces and not match.namespaces.matches(subject.namespace):
        return False
    if match.namespace_selector is not None and (
        subject.namespace_labels is None
        or not match.namespace_selector.matches(subject.namespace_labels)
    ):
        return False
    if match.selector is not None and not match.selector.matches(subject.labels):
        return False
    name = subject.name
    if match.names and not match.names.matches(name):
        return False
    if match.name_regex is not None and match.name_regex.fullmatch(name) is None:
        return False
    if match.secret_types and subject.obj.get("type", "Opaque") not in match.secret_types:
        return False
    return not who or _matches_who(match, subject)


def find_rule(policy: Policy, subject: Subject) -> Rule | None:
    """The first rule that matches `subject`, or None when the object is not governed."""
    if is_excluded_namespace(policy, subject.namespace):
        return None
    candidates = policy.rules_by_kind.get((subject.api_version, subject.kind), ())
    return next((rule for rule in candidates if _matches(rule, subject)), None)


def find_backfill_rule(
    policy: Policy, subject: Subject, *, attributed: bool, namespace_owned: bool
) -> Rule | None:
    """The rule that governs an object the webhook missed, found by the sweeper's backfill.

    `subject` carries what was attributed: the managed parent's owner (`inherited_owner`)
    and the creator the object records (`username`, empty when none). In order, the first
    rule that matches as at admission governs; when nothing attributed the creator or the
    parent (`attributed` false), a rule whose other fields match governs anyway if its
    `backfill` says so: `owned` in a namespace that has an owner, `any` everywhere.
    """
    if is_excluded_namespace(policy, subject.namespace):
        return None
    for rule in policy.rules:
        if _matches(rule, subject):
            return rule
        anyway = rule.backfill == "any" or (rule.backfill == "owned" and namespace_owned)
        if not attributed and anyway and _matches(rule, subject, who=False):
            return rule
    return None


def governs_kind(policy: Policy, api_version: str, kind: str) -> bool:
    """True when any rule names apiVersion/kind: a cheap check before any parent lookup."""
    return (api_version, kind) in policy.rules_by_kind


def needs_namespace_labels(policy: Policy) -> bool:
    """True when some rule selects namespaces by label, so the caller must look them up."""
    return any(rule.match.namespace_selector is not None for rule in policy.rules)
