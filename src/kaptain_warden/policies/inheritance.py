"""Owner inheritance: which objects an object was made for, in the order to ask them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kaptain_warden.policies.kinds import PARENT_LABELS


@dataclass(frozen=True)
class ParentRef:
    """A possible parent, in the object's namespace.

    `uid` is the ownerReference's: the parent found by name must carry it, or it is not the
    parent (a name is reused after a delete, and a tenant can write any name). Parent labels
    carry no uid.
    """

    api_version: str
    kind: str
    name: str
    uid: str | None = None


def parent_refs(obj: Mapping[str, Any]) -> tuple[ParentRef, ...]:
    """The object's parents: the controller ownerReference first, then other ownerReferences,
    then the well-known parent labels (InferenceService, Knative Service, Configuration).

    An ownerReference counts only with apiVersion, kind, name and uid, all strings (the API
    server refuses one without a uid, but the mutating webhook sees the object before that).

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
            and all(
                isinstance(o.get(k), str) and o.get(k)
                for k in ("apiVersion", "kind", "name", "uid")
            )
        ]
        valid.sort(key=lambda o: o.get("controller") is not True)
        refs += [ParentRef(o["apiVersion"], o["kind"], o["name"], o["uid"]) for o in valid]
    labels = metadata.get("labels")
    if isinstance(labels, Mapping):
        for label, kind in PARENT_LABELS:
            value = labels.get(label)
            if isinstance(value, str) and value:
                refs.append(ParentRef(kind.api_version, kind.kind, value))
    # A label naming an owner already referenced adds nothing (the reference has the uid).
    unique: dict[tuple[str, str, str], ParentRef] = {}
    for ref in refs:
        unique.setdefault((ref.api_version, ref.kind, ref.name), ref)
    return tuple(unique.values())
