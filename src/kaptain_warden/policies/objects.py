"""Reading Kubernetes objects defensively: what a field holds when it may be malformed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def metadata_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """`obj.metadata`, or an empty mapping when it is absent or not an object."""
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def string_map(value: object) -> dict[str, str]:
    """Labels or annotations as str -> str; non-string entries (invalid in the API) dropped."""
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
