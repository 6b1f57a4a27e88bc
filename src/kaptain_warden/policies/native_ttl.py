"""Native TTL fields: where a kind's own TTL lives, so `ttl-after-finished` can be mirrored
into it (a Job's controller, or the training operator, then removes the object itself)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaptain_warden.policies.durations import DurationError, parse_duration
from kaptain_warden.policies.kinds import known_kind

# Legacy tf-operator kept these directly under spec; their presence tells the shape in use.
_LEGACY_RUN_POLICY_FIELDS = (
    "cleanPodPolicy",
    "ttlSecondsAfterFinished",
    "activeDeadlineSeconds",
    "backoffLimit",
)


def native_ttl(obj: Mapping[str, Any], seconds: int) -> tuple[tuple[str, Any], ...]:
    """Where to mirror ttlAfterFinished into the kind's own TTL field, if it is unset."""
    kind = known_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    spec = obj.get("spec")
    if kind is None or kind.native_ttl is None or not isinstance(spec, Mapping):
        return ()
    if kind.native_ttl == "job":
        return (
            ()
            if "ttlSecondsAfterFinished" in spec
            else (("/spec/ttlSecondsAfterFinished", seconds),)
        )
    run_policy = spec.get("runPolicy")
    if isinstance(run_policy, Mapping):
        if "ttlSecondsAfterFinished" in run_policy:
            return ()
        return (("/spec/runPolicy/ttlSecondsAfterFinished", seconds),)
    if any(f in spec for f in _LEGACY_RUN_POLICY_FIELDS):
        if "ttlSecondsAfterFinished" in spec:
            return ()
        return (("/spec/ttlSecondsAfterFinished", seconds),)
    return (("/spec/runPolicy", {"ttlSecondsAfterFinished": seconds}),)


def _native_location(obj: Mapping[str, Any]) -> tuple[str, object] | None:
    """(JSON pointer, current value or None) of the kind's native TTL field, if it has one."""
    kind = known_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    spec = obj.get("spec")
    if kind is None or kind.native_ttl is None or not isinstance(spec, Mapping):
        return None
    run_policy = spec.get("runPolicy")
    if kind.native_ttl == "job" or (
        not isinstance(run_policy, Mapping) and any(f in spec for f in _LEGACY_RUN_POLICY_FIELDS)
    ):
        return "/spec/ttlSecondsAfterFinished", spec.get("ttlSecondsAfterFinished")
    value = run_policy.get("ttlSecondsAfterFinished") if isinstance(run_policy, Mapping) else None
    return "/spec/runPolicy/ttlSecondsAfterFinished", value


def native_follows(
    old: Mapping[str, Any], new: Mapping[str, Any], old_after: str | None, new_after: str | None
) -> tuple[dict[str, Any], ...]:
    """Keep a native TTL the warden mirrored equal to `ttl-after-finished` across an update.

    Only when the old native value was the mirror, and the request did not set a value of
    its own: a replace that drops the field gets it back, a TTL change moves it along.
    """
    old_seconds, seconds = _duration_seconds(old_after), _duration_seconds(new_after)
    old_place, new_place = _native_location(old), _native_location(new)
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
