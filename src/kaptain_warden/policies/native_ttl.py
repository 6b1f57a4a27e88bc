"""Native TTL fields: where a kind's own TTL lives, so `ttl-after-finished` can be mirrored
into it (a Job's controller, or the training operator, then removes the object itself).

Where a kind keeps it is its registry entry's `native_ttl` (`kinds.spec.NativeTtl`): a Job's
`spec.ttlSecondsAfterFinished`, a training job's `spec.runPolicy.ttlSecondsAfterFinished`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaptain_warden.policies.durations import DurationError, parse_duration
from kaptain_warden.policies.kinds import NativeTtl, registered_kind
from kaptain_warden.policies.kinds.paths import json_pointer, parse_path, value_at

__all__ = ["native_follows", "native_location", "native_ttl"]


def _path_for(obj: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The native TTL field's keys for this object, or None (no such field, or no `spec`-like
    root to put it in)."""
    kind = registered_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    native: NativeTtl | None = kind.native_ttl if kind is not None else None
    if native is None:
        return None
    keys = _keys(native.path)
    if not isinstance(obj.get(keys[0]), Mapping):
        return None
    if native.legacy_path is not None:
        legacy = _keys(native.legacy_path)
        legacy_parent = value_at(obj, ".".join(legacy[:-1]))
        if (
            not isinstance(value_at(obj, ".".join(keys[:-1])), Mapping)
            and isinstance(legacy_parent, Mapping)
            and any(m in legacy_parent for m in native.legacy_markers)
        ):
            return legacy
    return keys


def _keys(path: str) -> tuple[str, ...]:
    return tuple(step.key for step in parse_path(path) if step.key is not None)


def native_location(obj: Mapping[str, Any]) -> tuple[str, object] | None:
    """(JSON pointer, current value or None) of the object's native TTL field, if its kind
    has one."""
    keys = _path_for(obj)
    if keys is None:
        return None
    return json_pointer(*keys), value_at(obj, ".".join(keys))


def native_ttl(obj: Mapping[str, Any], seconds: int) -> tuple[tuple[str, Any], ...]:
    """(JSON pointer, value) pairs that set the native TTL field to `seconds` when the object
    does not set it (any value it holds is the user's and stays); missing parents are added
    whole (`/spec/runPolicy` = `{ttlSecondsAfterFinished: ...}`)."""
    keys = _path_for(obj)
    if keys is None:
        return ()
    node: Mapping[str, Any] = obj
    for depth, key in enumerate(keys[:-1]):
        child = node.get(key)
        if not isinstance(child, Mapping):
            value: Any = seconds
            for inner in reversed(keys[depth + 1 :]):
                value = {inner: value}
            return ((json_pointer(*keys[: depth + 1]), value),)
        node = child
    if keys[-1] in node:
        return ()
    return ((json_pointer(*keys), seconds),)


def native_follows(
    old: Mapping[str, Any], new: Mapping[str, Any], old_after: str | None, new_after: str | None
) -> tuple[dict[str, Any], ...]:
    """Keep a native TTL the warden mirrored equal to `ttl-after-finished` across an update.

    Only when the old native value was the mirror, and the request did not set a value of
    its own: a replace that drops the field gets it back, a TTL change moves it along.
    """
    old_seconds, seconds = _duration_seconds(old_after), _duration_seconds(new_after)
    old_place, new_place = native_location(old), native_location(new)
    if old_seconds is None or seconds is None or old_place is None or new_place is None:
        return ()
    if old_place[1] != old_seconds:
        return ()
    path, value = new_place
    if value is None:
        return tuple({"op": "add", "path": p, "value": v} for p, v in native_ttl(new, seconds))
    if value != old_place[1] or value == seconds:
        return ()
    return ({"op": "add", "path": path, "value": seconds},)


def _duration_seconds(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(parse_duration(value).total_seconds())
    except DurationError:
        return None
