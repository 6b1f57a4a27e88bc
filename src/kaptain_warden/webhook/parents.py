"""What the admission server asks the cluster: parents' owners and namespace labels (protocols)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kaptain_warden.policies.provenance import CreatorPod, Provenance


class ParentResolver(Protocol):
    """Finds the owner an object inherits from a managed parent
    (docs/policy-authors/metadata-contract.md).

    Called only on CREATE of a governed kind whose object names a parent, in `ownerReferences`
    or in one of `policies.kinds.PARENT_LABELS`. An implementation should answer within a
    small time budget (the API server waits on every admission) and raise when the parents
    cannot be read: the exception is logged and both webhooks decide as if there were no
    parent (the owner is the requester), so a failed lookup never widens a claim.
    """

    def inherited_owner(self, *, namespace: str, obj: Mapping[str, Any]) -> str | None:
        """The warden owner of the managed parent `obj` names, or None when there is none.

        Raises on failure (unreadable parents), which is not the same as None.
        """
        ...

    def inherited(
        self, *, namespace: str, obj: Mapping[str, Any], deadline: float | None = None
    ) -> tuple[str, dict[str, str]] | None:
        """As `inherited_owner`, with the parent's provenance annotations (which the child
        inherits with the owner): (owner, annotations), or None when there is no managed
        parent. Raises on failure. `deadline` is the review's lookup deadline
        (`time.monotonic()` seconds), shared with its other lookups."""
        ...


class NamespaceLabels(Protocol):
    """Reads a namespace's labels, for policies that select namespaces by label.

    Called only when the policy has a `namespaceSelector`, for governed kinds. Exceptions are
    logged and treated as "labels unknown", which no namespace selector matches.
    """

    def namespace_labels(self, *, namespace: str) -> Mapping[str, str] | None:
        """The labels of `namespace`, or None when it cannot be read."""
        ...


class ProvenanceLookup(Protocol):
    """Finds what a creator Pod says about an object's origin (its notebook, the Profile
    owner of its namespace).

    Called only on CREATE of a governed kind by a Pod-bound identity, once per review, with
    the review's lookup deadline (`time.monotonic()` seconds). Never raises: a lookup that
    failed or ran out of time is named in `Provenance.unresolved`.
    """

    def provenance(
        self, *, namespace: str, pod: CreatorPod, deadline: float | None = None
    ) -> Provenance:
        """The provenance of an object `pod`'s token creates in `namespace`."""
        ...
