"""Reading Kubernetes objects defensively: what a field holds when it may be malformed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def metadata_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """`obj.metadata`, or an empty mapping when it is absent or not an object."""
    meta = obj.get("metadata")
    # `type(...) is dict` first: decoded JSON is a dict, and the ABC check costs ten times more
    # on the sweeper's path (several calls per object, 100,000 objects a pass).
    return meta if type(meta) is dict or isinstance(meta, Mapping) else {}


def metadata_maps(obj: Mapping[str, Any] | None) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) of an object, as str -> str."""
    metadata = metadata_of(obj) if isinstance(obj, Mapping) else {}
    return string_map(metadata.get("labels")), string_map(metadata.get("annotations"))


def string_map(value: object) -> dict[str, str]:
    """Labels or annotations as str -> str; non-string entries (invalid in the API) dropped."""
    if type(value) is not dict and not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if type(k) is str and type(v) is str}
