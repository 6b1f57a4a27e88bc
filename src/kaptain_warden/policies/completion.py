"""When did a job-like object finish? Read from each kind's own status, never guessed.

How each kind says it finished is its registry entry's `finish` (`kinds.spec`): a condition
that turned True (Jobs, training-operator jobs, Katib Experiments) or a state field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from kaptain_warden.policies.kinds import (
    ConditionsFinish,
    Finish,
    KnownKind,
    StateFinish,
    registered_kind_of,
)
from kaptain_warden.policies.kinds.paths import value_at
from kaptain_warden.policies.timestamps import parse_time

__all__ = ["finished_at", "has_finished"]


def finished_at(obj: Mapping[str, Any], kind: KnownKind | None = None) -> datetime | None:
    """Return when `obj` finished, as an aware UTC datetime, or None.

    None means "not finished", "a kind we do not know how to read" or "finished, but the
    time is missing or unreadable": callers must treat None as "do not expire by
    completion". The kind is `kind`, else looked up from the object's apiVersion (any version
    of its group) and kind.
    """
    kind = kind if kind is not None else registered_kind_of(obj)
    if kind is None or kind.finish is None:
        return None
    return _finish_time(obj, kind.finish)


def has_finished(obj: Mapping[str, Any], kind: KnownKind) -> bool:
    """Whether `obj` (of `kind`) has finished and will not run again.

    A kind whose finish carries no time (a Pod's phase) has finished when its state says so;
    otherwise only with a readable finish time, as for `finished_at`: a status we cannot
    fully read does not count as finished.
    """
    finish = kind.finish
    if isinstance(finish, StateFinish) and finish.time is None:
        return _state_matches(obj, finish)
    return finish is not None and _finish_time(obj, finish) is not None


def _finish_time(obj: Mapping[str, Any], finish: Finish) -> datetime | None:
    if isinstance(finish, StateFinish):
        if finish.time is None or not _state_matches(obj, finish):
            return None
        return _read_time(value_at(obj, finish.time))
    status = obj.get("status")
    if not isinstance(status, Mapping):
        return None
    return _condition_time(status, finish)


def _state_matches(obj: Mapping[str, Any], finish: StateFinish) -> bool:
    state = value_at(obj, finish.state)
    return isinstance(state, str) and state in finish.values


def _read_time(raw: object) -> datetime | None:
    return None if raw is None or raw == "" else parse_time(raw)


def _conditions(status: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return
    for condition in conditions:
        if isinstance(condition, Mapping):
            yield condition


def _condition_time(status: Mapping[str, Any], finish: ConditionsFinish) -> datetime | None:
    """The finish instant from the first finished condition, or None.

    A present but unreadable timestamp gives None rather than falling back to the other
    field: a status we cannot fully read is not evidence enough to start a TTL clock.
    """
    finished = next(
        (
            c
            for c in _conditions(status)
            if c.get("type") in finish.types and c.get("status") == "True"
        ),
        None,
    )
    if finished is None:
        return None
    fields: list[tuple[Mapping[str, Any], str]] = [
        (finished, "lastTransitionTime"),
        (status, "completionTime"),
    ]
    if finish.prefer_completion_time:
        fields.reverse()
    for source, key in fields:
        raw = source.get(key)
        if raw is None or raw == "":
            continue  # absent: try the other field
        return parse_time(raw)  # present: it decides, readable or not
    return None
