"""Dotted paths into Kubernetes objects, through maps and lists: how the registry points.

`spec.tfReplicaSpecs.*.template.spec` goes through every value of the `tfReplicaSpecs` map;
`spec.workerGroupSpecs[*].template.spec` through every item of the `workerGroupSpecs` list.
A walk never fails on a malformed object (tenants write them): a step that finds the wrong
type, or nothing, yields nothing. Its cost is bounded by the object's size.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Step", "json_pointer", "parse_path", "value_at", "values", "walk"]

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Step:
    """One step: a key of a map, every value of a map (`*`), or every item of a list."""

    key: str | None  # None: every value of the map (`*`)
    items: bool = False  # then every item of the list found

    @property
    def many(self) -> bool:
        """The step can lead to more than one node."""
        return self.key is None or self.items


@functools.cache
def parse_path(path: str) -> tuple[Step, ...]:
    """The steps of a dotted path; ValueError names the bad segment (a registry typo fails
    at import, not on a live object)."""
    steps = []
    for segment in path.split("."):
        items = segment.endswith("[*]")
        name = segment[:-3] if items else segment
        if name == "*":
            steps.append(Step(None, items))
        elif _KEY.fullmatch(name):
            steps.append(Step(name, items))
        else:
            raise ValueError(
                f"{path!r}: {segment!r} is not a key, `*` (every map value) or `key[*]` "
                "(every list item)"
            )
    return tuple(steps)


def walk(node: object, path: str) -> Iterator[Mapping[str, Any]]:
    """Every mapping found at `path` below `node`."""
    for found in values(node, path):
        if isinstance(found, Mapping):
            yield found


def values(node: object, path: str) -> Iterator[object]:
    """Every value found at `path` below `node`, whatever its type (`walk` keeps the maps)."""
    yield from _values(node, parse_path(path))


def _values(node: object, steps: Sequence[Step]) -> Iterator[object]:
    if not steps:
        yield node
        return
    if not isinstance(node, Mapping):
        return
    step, rest = steps[0], steps[1:]
    children = node.values() if step.key is None else (node.get(step.key),)
    for child in children:
        if not step.items:
            yield from _values(child, rest)
        elif isinstance(child, list):
            for item in child:
                yield from _values(item, rest)


def value_at(node: object, path: str) -> object:
    """The value at a path of single keys (no `*`, no `[*]`), or None when it is not there."""
    steps = parse_path(path)
    if any(s.many for s in steps):
        raise ValueError(f"{path!r} names more than one value")
    for step in steps:
        if not isinstance(node, Mapping):
            return None
        node = node.get(step.key)
    return node


def json_pointer(*keys: str) -> str:
    """The JSON Pointer (RFC 6901) of the member reached through map `keys`, each escaped as a
    reference token (`~` → `~0`, `/` → `~1`): the `path` of a JSON Patch operation."""
    return "".join("/" + key.replace("~", "~0").replace("/", "~1") for key in keys)
