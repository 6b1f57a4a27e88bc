"""The kind registry: every family module under `families/`, and the tables read from it.

Nothing else in the code names a kind: completion, the native-TTL mirror, Secret holders, owner
inheritance, the policy loader, the webhook and RBAC rules, and the chart's generated tables all
read these. A family is found by being a module of `families/` with a `FAMILY`; families are
taken in module-name order, so every table is stable.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from kaptain_warden.policies.kinds import families
from kaptain_warden.policies.kinds.spec import Family, KnownKind, split_api_version

__all__ = [
    "ALL_KINDS",
    "FAMILIES",
    "HOLDER_KINDS",
    "KNOWN_KINDS",
    "PARENT_LABELS",
    "PARENT_ONLY_KINDS",
    "family_of",
    "known_kind",
    "registered_kind",
    "registered_kind_of",
]


def _discover() -> tuple[Family, ...]:
    found = []
    for module_info in sorted(pkgutil.iter_modules(families.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{families.__name__}.{module_info.name}")
        family = getattr(module, "FAMILY", None)
        if not isinstance(family, Family):
            raise TypeError(f"{module.__name__} defines no FAMILY (a kinds.spec.Family)")
        found.append(family)
    return tuple(found)


def _checked(found: tuple[Family, ...]) -> tuple[Family, ...]:
    seen: dict[tuple[str, str], str] = {}
    labels: dict[str, str] = {}
    for family in found:
        for kind in family.kinds:
            key = (kind.api_version, kind.kind)
            if key in seen:
                raise ValueError(
                    f"{kind.api_version} {kind.kind} is declared by both {seen[key]!r} and "
                    f"{family.name!r}"
                )
            seen[key] = family.name
            for label in kind.parent_labels:
                if label in labels:
                    raise ValueError(f"parent label {label} names two kinds ({labels[label]})")
                labels[label] = f"{kind.api_version} {kind.kind}"
    return found


#: Every family, in module-name order.
FAMILIES: tuple[Family, ...] = _checked(_discover())
#: Every kind of every family.
ALL_KINDS: tuple[KnownKind, ...] = tuple(k for f in FAMILIES for k in f.kinds)
#: The kinds a policy may name without `resource:`.
KNOWN_KINDS: tuple[KnownKind, ...] = tuple(k for k in ALL_KINDS if k.governable)
#: The kinds whose objects can keep a Secret in use: read before a Secret is deleted.
HOLDER_KINDS: tuple[KnownKind, ...] = tuple(k for k in ALL_KINDS if k.holds_secrets)
#: Kinds never governed that owner inheritance reads through (Katib Trials).
PARENT_ONLY_KINDS: tuple[KnownKind, ...] = tuple(
    k for k in ALL_KINDS if k.parent and not k.governable
)
#: Labels that name the object an object was made for: (label, the kind of that parent).
PARENT_LABELS: tuple[tuple[str, KnownKind], ...] = tuple(
    (label, k) for k in ALL_KINDS for label in k.parent_labels
)

_BY_API_VERSION_KIND = {(k.api_version, k.kind): k for k in ALL_KINDS}
_BY_GROUP_KIND: dict[tuple[str, str], KnownKind] = {}
for _kind in ALL_KINDS:
    _BY_GROUP_KIND.setdefault((_kind.group, _kind.kind), _kind)
_FAMILY_OF = {(k.api_version, k.kind): f for f in FAMILIES for k in f.kinds}


def known_kind(api_version: str, kind: str) -> KnownKind | None:
    """The registry's entry for a kind a policy may name, or None."""
    entry = _BY_API_VERSION_KIND.get((api_version, kind))
    return entry if entry is not None and entry.governable else None


def registered_kind(api_version: str, kind: str) -> KnownKind | None:
    """The registry's entry for apiVersion/kind, governable or not, or None."""
    return _BY_API_VERSION_KIND.get((api_version, kind))


def registered_kind_of(obj: Mapping[str, Any]) -> KnownKind | None:
    """The entry for an object's kind, in any version of its group (a status reads the same
    across the versions a CRD serves), or None."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    return _BY_GROUP_KIND.get((split_api_version(api_version)[0], kind))


def family_of(kind: KnownKind) -> Family | None:
    """The family that declares `kind`, or None for a kind a policy brought (`resource:`)."""
    return _FAMILY_OF.get((kind.api_version, kind.kind))
