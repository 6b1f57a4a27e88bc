"""The policy model: frozen dataclasses built by the loader, read by every component."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from types import MappingProxyType
from typing import Literal

from kaptain_warden.policies.kinds import KnownKind
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.policies.retention import RetentionSettings

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
PropagationPolicy = Literal["Background", "Foreground", "Orphan"]
#: Which objects the sweeper's backfill stamps under a rule when it cannot tell who made them:
#:   attributed  none: only objects whose creator or managed parent is known and matches
#:   owned       also those in a namespace that has an owner (a Kubeflow Profile's), owned by it
#:   any         also those with no evidence at all, owned by `unknown`
BackfillScope = Literal["attributed", "owned", "any"]


@dataclass(frozen=True)
class Requirement:
    """One `matchExpressions` entry of a Kubernetes label selector."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes semantics: NotIn and DoesNotExist match when the key is absent."""
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector (`matchLabels` and `matchExpressions`, ANDed)."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when every term of the selector holds for `labels`."""
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )


@dataclass(frozen=True)
class Globs:
    """Shell-style patterns (`*`, `?`, `[...]`), compiled once at load."""

    patterns: tuple[str, ...] = ()
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, patterns: tuple[str, ...]) -> Globs:
        """Compile `patterns` into one regular expression."""
        if not patterns:
            return cls()
        joined = "|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)
        return cls(patterns, re.compile(joined))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, value: str) -> bool:
        """True when `value` matches any pattern (case-sensitive)."""
        return self._regex is not None and self._regex.match(value) is not None


@dataclass(frozen=True)
class Match:
    """What a rule applies to. Empty fields match everything; non-empty fields are ANDed."""

    kinds: tuple[KnownKind, ...]
    namespaces: Globs = Globs()
    namespace_selector: LabelSelector | None = None
    selector: LabelSelector | None = None
    names: Globs = Globs()
    name_regex: re.Pattern[str] | None = None
    secret_types: frozenset[str] = frozenset()
    users: Globs = Globs()
    groups: Globs = Globs()
    # Objects made by controllers for a managed parent match whoever the requester is,
    # and take the parent's owner (docs/policy-authors/metadata-contract.md, owner).
    inherit: bool = True


@dataclass(frozen=True)
class Rule:
    """One policy rule; the first matching rule governs an object."""

    id: str
    match: Match
    description: str = ""
    ttl: timedelta | None = None
    ttl_after_finished: timedelta | None = None
    max_ttl: timedelta = timedelta(days=30)
    allow_keep: bool = False
    retention: RetentionSettings | None = None
    backfill: BackfillScope = "attributed"
    # How long before its expiry an object's owner is warned (an Event, once). None: the
    # default, the smaller of 2h and a quarter of the object's TTL; zero: never warned.
    warn_before: timedelta | None = None
    # Due once the creator Pod (`created-by-pod-uid`) has been gone this long.
    expire_when_creator_gone: timedelta | None = None

    def governs_kind(self, api_version: str, kind: str) -> bool:
        """True when this rule's match names apiVersion/kind."""
        return any(k.api_version == api_version and k.kind == kind for k in self.match.kinds)


@dataclass(frozen=True)
class Settings:
    """Global settings of a policy file (their meanings and defaults: the policy schema)."""

    metadata_prefix: str
    warden_namespace: str
    excluded_namespaces: frozenset[str]
    privileged_users: Globs
    privileged_groups: Globs
    dry_run: bool
    backfill: bool
    propagation_policy: PropagationPolicy

    @cached_property
    def all_excluded_namespaces(self) -> frozenset[str]:
        """The configured exclusions plus the ones that are always excluded (made once: every
        review and listed object asks)."""
        return self.excluded_namespaces | {"kube-system", self.warden_namespace}


@dataclass(frozen=True)
class Policy:
    """A validated policy: settings, rules in evaluation order, and where it came from."""

    settings: Settings
    rules: tuple[Rule, ...]
    source: str = "<memory>"

    @cached_property
    def keys(self) -> MetadataKeys:
        """The metadata keys under this policy's prefix (made once: read per object)."""
        return MetadataKeys(self.settings.metadata_prefix)

    @cached_property
    def rules_by_kind(self) -> Mapping[tuple[str, str], tuple[Rule, ...]]:
        """(apiVersion, kind) -> the rules that name it, in evaluation order (made once: every
        review asks which rules may govern its kind; the others cannot match)."""
        found: dict[tuple[str, str], list[Rule]] = {}
        for rule in self.rules:
            for kind in rule.match.kinds:
                candidates = found.setdefault((kind.api_version, kind.kind), [])
                if not candidates or candidates[-1] is not rule:  # a kind named twice
                    candidates.append(rule)
        return MappingProxyType({key: tuple(rules) for key, rules in found.items()})

    @property
    def kinds(self) -> tuple[KnownKind, ...]:
        """Every kind some rule governs, in first-seen order, without repeats."""
        seen: dict[tuple[str, str], KnownKind] = {}
        for rule in self.rules:
            for kind in rule.match.kinds:
                seen.setdefault((kind.api_version, kind.kind), kind)
        return tuple(seen.values())

    def rule_by_id(self, rule_id: str) -> Rule | None:
        """The rule with this id, or None (e.g. a label stamped under an older policy)."""
        return next((r for r in self.rules if r.id == rule_id), None)

    def is_privileged(self, username: str, groups: tuple[str, ...]) -> bool:
        """True for identities the policy exempts from validation."""
        s = self.settings
        return s.privileged_users.matches(username) or any(
            s.privileged_groups.matches(g) for g in groups
        )
