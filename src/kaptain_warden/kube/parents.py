"""Read the owner of an object's parent through the API server, cached and under a time budget.

The admission server calls this for objects made by controllers (a Knative Revision, a Katib
trial's TFJob): they inherit the owner annotation of the nearest managed ancestor. A lookup that
fails or runs out of time raises `ParentLookupError`, which the admission server tells apart from
"no managed parent".

Every part of a parent reference is written by whoever creates the object, so a lookup cannot
be steered: only the parent kinds the policy knows are read (their resource names come from the
kinds table, not from discovery); a name that is not a DNS-1123 subdomain, or a namespace that
is not a DNS-1123 label, is refused before any request, and path segments are quoted anyway;
the namespace is always the object's own (an ownerReference never crosses namespaces, and every
parent kind is namespaced); the parent found must carry the reference's `uid`; the client never
retries; and one deadline covers all the lookups of one review.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubernetes import client as k8s

from kaptain_warden.kube.client import METADATA_ONLY, get_json, kind_path
from kaptain_warden.kube.errors import ApiError, describe_error
from kaptain_warden.policies.inheritance import ParentRef, parent_refs
from kaptain_warden.policies.kinds import KNOWN_KINDS, PARENT_ONLY_KINDS, KnownKind
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.policies.names import is_dns1123_label, is_dns1123_subdomain
from kaptain_warden.policies.objects import string_map


class ParentLookupError(RuntimeError):
    """The parents could not be read (API error, unreachable, or out of time budget)."""


class LookupBudgetExceededError(TimeoutError):
    """The time budget for one admission's parent lookups ran out."""


@dataclass(frozen=True)
class _Entry:
    expires: float
    owner: str | None
    parents: tuple[ParentRef, ...]
    # A managed parent's provenance annotations, which its children inherit with the owner.
    provenance: tuple[tuple[str, str], ...] = ()


class ParentOwnerResolver:
    """Finds the inherited owner of an object by walking up to `max_depth` ancestors.

    `kinds` are the parent kinds that may be read (default: every known kind); kinds that are
    never parents (Secrets) are not, and the registry's parent-only kinds always are (Katib
    Trials: the link between an Experiment and its trials' jobs).
    `api_client`'s configuration is copied without retries: a retried GET would outlive the
    budget and hold an admission thread the longer.
    """

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        keys: MetadataKeys,
        kinds: Iterable[KnownKind] = KNOWN_KINDS,
        budget_seconds: float = 1.0,
        ttl_seconds: float = 30.0,
        negative_ttl_seconds: float = 3.0,
        max_entries: int = 4096,
        max_depth: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        configuration = copy.deepcopy(api_client.configuration)
        configuration.retries = False
        configuration.client_go_retries = False
        self._api = k8s.ApiClient(configuration)
        self._kinds = {(k.api_version, k.kind): k for k in (*kinds, *PARENT_ONLY_KINDS) if k.parent}
        self._keys = keys
        self._budget = budget_seconds
        self._ttl = ttl_seconds
        # Parents are stamped at creation, so "no owner" rarely changes; cache it briefly anyway
        # so that a parent created a moment later is found on the next admission.
        self._negative_ttl = negative_ttl_seconds
        self._max_entries = max_entries
        self._max_depth = max_depth
        self._clock = clock
        self._cache: OrderedDict[tuple[str, ParentRef], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def inherited_owner(self, *, namespace: str, obj: Mapping[str, Any]) -> str | None:
        """The owner annotation of the nearest managed ancestor, or None when there is none.

        Raises:
            ParentLookupError: a parent could not be read within the time budget.
        """
        found = self.inherited(namespace=namespace, obj=obj)
        return found[0] if found is not None else None

    def inherited(
        self, *, namespace: str, obj: Mapping[str, Any], deadline: float | None = None
    ) -> tuple[str, dict[str, str]] | None:
        """(owner, provenance annotations) of the nearest managed ancestor, or None.

        Raises:
            ParentLookupError: a parent could not be read within the time budget.
        """
        if not is_dns1123_label(namespace):
            # Cluster-scoped objects have no namespace, and no parent kind is cluster-scoped.
            return None
        if deadline is None:  # else the review's, shared with its other lookups
            deadline = self._clock() + self._budget
        try:
            entry = self._search(namespace, parent_refs(obj), deadline, depth=1)
        except LookupBudgetExceededError as exc:
            raise ParentLookupError(
                f"parent lookup of {namespace}/{_name_of(obj)} ran out of its "
                f"{self._budget * 1000:.0f} ms budget"
            ) from exc
        except ApiError as exc:
            raise ParentLookupError(
                f"parent lookup of {namespace}/{_name_of(obj)} failed: {describe_error(exc)}"
            ) from exc
        if entry is None or entry.owner is None:
            return None
        return entry.owner, dict(entry.provenance)

    def _search(
        self, namespace: str, refs: tuple[ParentRef, ...], deadline: float, depth: int
    ) -> _Entry | None:
        for ref in refs:
            entry = self._lookup(namespace, ref, deadline)
            if entry.owner is not None:
                return entry
            if depth < self._max_depth:
                found = self._search(namespace, entry.parents, deadline, depth + 1)
                if found is not None:
                    return found
        return None

    def _remaining(self, deadline: float) -> float:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise LookupBudgetExceededError()
        return remaining

    def _lookup(self, namespace: str, ref: ParentRef, deadline: float) -> _Entry:
        key = (namespace, ref)
        now = self._clock()
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and entry.expires > now:
                self._cache.move_to_end(key)
                return entry
        kind = self._kinds.get((ref.api_version, ref.kind))
        if kind is None or not is_dns1123_subdomain(ref.name):
            # Not a kind the policy knows, or a name no object can have: not a parent, and
            # nothing is asked (a name like `x?resourceVersion=9` or `x/../../team-b/...`
            # would otherwise steer the request).
            entry = _Entry(now + self._ttl, None, ())
        else:
            path = kind_path(
                kind,
                namespace=quote(namespace, safe=""),
                name=quote(ref.name, safe=""),
            )
            try:
                meta = get_json(
                    self._api, path, accept=METADATA_ONLY, timeout=self._remaining(deadline)
                )
            except ApiError as exc:
                if exc.status != 404:
                    raise
                entry = _Entry(now + self._negative_ttl, None, ())
            else:
                entry = self._entry_from(meta, ref, now)
        with self._lock:
            self._cache[key] = entry
            self._cache.move_to_end(key)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return entry

    def _entry_from(self, meta: Mapping[str, Any], ref: ParentRef, now: float) -> _Entry:
        metadata = meta.get("metadata")
        if ref.uid is not None and (
            not isinstance(metadata, Mapping) or metadata.get("uid") != ref.uid
        ):
            # Another object under the parent's name (recreated, or a tenant's guess): the
            # reference does not point at it.
            return _Entry(now + self._negative_ttl, None, ())
        annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
        owner = annotations.get(self._keys.owner) if isinstance(annotations, Mapping) else None
        if isinstance(owner, str) and owner:
            provenance = string_map(annotations)
            return _Entry(
                now + self._ttl,
                owner,
                (),
                tuple(
                    (k, provenance[k]) for k in self._keys.provenance_annotations if k in provenance
                ),
            )
        return _Entry(now + self._negative_ttl, None, parent_refs(meta))


def _name_of(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    if isinstance(metadata, Mapping):
        return str(metadata.get("name") or metadata.get("generateName") or "")
    return ""
