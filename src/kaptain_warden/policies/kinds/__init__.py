"""What kaptain-warden knows about each kind: one declarative spec per family, one registry.

`spec` holds the vocabulary (`KnownKind`, `Family`, how a kind finishes, its native TTL, its
Secret references), `families/` one module per kind family, `registry` the tables read from
them, `paths` the dotted paths the specs point with. Adding a family: CONTRIBUTING.md.
"""

from kaptain_warden.policies.kinds.registry import (
    ALL_KINDS,
    FAMILIES,
    HOLDER_KINDS,
    KNOWN_KINDS,
    PARENT_LABELS,
    PARENT_ONLY_KINDS,
    family_of,
    known_kind,
    registered_kind,
    registered_kind_of,
)
from kaptain_warden.policies.kinds.spec import (
    ApiVersioned,
    ConditionsFinish,
    Family,
    Finish,
    KnownKind,
    NativeTtl,
    SecretRefs,
    StateFinish,
    api_version_of,
    split_api_version,
)

__all__ = [
    "ALL_KINDS",
    "FAMILIES",
    "HOLDER_KINDS",
    "KNOWN_KINDS",
    "PARENT_LABELS",
    "PARENT_ONLY_KINDS",
    "ApiVersioned",
    "ConditionsFinish",
    "Family",
    "Finish",
    "KnownKind",
    "NativeTtl",
    "SecretRefs",
    "StateFinish",
    "api_version_of",
    "family_of",
    "known_kind",
    "registered_kind",
    "registered_kind_of",
    "split_api_version",
]
