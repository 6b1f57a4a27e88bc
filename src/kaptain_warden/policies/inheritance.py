"""Owner inheritance: which objects an object was made for, in the order to ask them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kaptain_warden.policies.metadata import PARENT_LABELS


@dataclass(frozen=True)
class ParentRef:
    """A possible parent, in the object's namespace."""

    api_version: str
    kind: str
    name: str


def parent_refs(obj: Mapping[str, Any]) -> tuple[ParentRef, ...]:
    """The object's parents: the controller ownerReference first, then other ownerReferences,
    then the well-known parent labels (InferenceService, Knative Service, Configuration).

    Knative Revisions are owned by a Configuration and labelled with the InferenceService that
    caused them, so one lookup usually suffices.
    """
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return ()
    refs: list[ParentRef] = []
    owners = metadata.get("ownerReferences")
    if isinstance(owners, list):
        valid = [
            o
            for o in owners
            if isinstance(o, Mapping)
            and all(isinstance(o.get(k), str) and o.get(k) for k in ("apiVersion", "kind", "name"))
        ]
        valid.sort(key=lambda o: o.get("controller") is not True)
        refs += [ParentRef(o["apiVersion"], o["kind"], o["name"]) for o in valid]
    labels = metadata.get("labels")
    if isinstance(labels, Mapping):
        for label, api_version, kind in PARENT_LABELS:
            value = labels.get(label)
            if isinstance(value, str) and value:
                refs.append(ParentRef(api_version, kind, value))
    seen: set[ParentRef] = set()
    return tuple(r for r in refs if not (r in seen or seen.add(r)))  # type: ignore[func-returns-value]
