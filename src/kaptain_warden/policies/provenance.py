"""Provenance: which Pod (and so which notebook and person) created an object.

A bound ServiceAccount token, what a Pod gets by default, makes the API server put the Pod's
name and uid in the request's `userInfo.extra`; nobody can write those but the API server (or
an identity allowed to impersonate user extras, a cluster administrator). The notebook the Pod
belongs to and the namespace's Kubeflow Profile owner are read from the cluster, within the
review's lookup budget; a lookup that fails leaves its key out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kaptain_warden.policies.metadata import POD_NAME_EXTRA, POD_UID_EXTRA, MetadataKeys
from kaptain_warden.policies.names import is_dns1123_subdomain

# Kubernetes object uids are RFC 4122 UUIDs, as the API server writes them.
_UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
# The annotation values a lookup fills in; bounded like any value a tenant influences.
MAX_VALUE_LENGTH = 253


@dataclass(frozen=True)
class CreatorPod:
    """The Pod a request's bound token names."""

    name: str
    uid: str


def creator_pod(extra: Mapping[str, Sequence[str]]) -> CreatorPod | None:
    """The Pod named by `userInfo.extra`, or None (no Pod binding, or not exactly one valid
    name and one valid uid)."""
    names, uids = extra.get(POD_NAME_EXTRA), extra.get(POD_UID_EXTRA)
    if not names or not uids or len(names) != 1 or len(uids) != 1:
        return None
    name, uid = names[0], uids[0]
    if not is_dns1123_subdomain(name) or not isinstance(uid, str) or not _UID.fullmatch(uid):
        return None
    return CreatorPod(name, uid)


def is_provenance_value(value: object) -> bool:
    """A value a lookup may record: a non-empty string of printable characters, bounded."""
    return isinstance(value, str) and 0 < len(value) <= MAX_VALUE_LENGTH and value.isprintable()


@dataclass(frozen=True)
class Provenance:
    """Where a new object came from, as the webhook found it.

    `unresolved` holds the metadata keys whose lookup failed or ran out of time: the mutator leaves
    them out, and the validator (whose own lookup may fail when the mutator's did not, or the
    other way round) does not hold their value or absence against the request.
    """

    pod: CreatorPod | None = None
    notebook: str | None = None
    profile_owner: str | None = None
    unresolved: frozenset[str] = field(default=frozenset())

    def annotations(self, keys: MetadataKeys) -> dict[str, str | None]:
        """The provenance annotations a new object carries (None: absent)."""
        return {
            keys.created_by_pod: self.pod.name if self.pod is not None else None,
            keys.created_by_pod_uid: self.pod.uid if self.pod is not None else None,
            keys.notebook: self.notebook,
            keys.profile_owner: self.profile_owner,
        }


NO_PROVENANCE = Provenance()


def inherited_provenance(annotations: Mapping[str, str], keys: MetadataKeys) -> Provenance:
    """The provenance a controller-made child takes from its managed parent's annotations."""
    name = annotations.get(keys.created_by_pod)
    uid = annotations.get(keys.created_by_pod_uid)
    pod = creator_pod({POD_NAME_EXTRA: [name], POD_UID_EXTRA: [uid]}) if name and uid else None
    notebook = annotations.get(keys.notebook)
    person = annotations.get(keys.profile_owner)
    return Provenance(
        pod=pod,
        notebook=notebook if is_provenance_value(notebook) else None,
        profile_owner=person if is_provenance_value(person) else None,
    )
