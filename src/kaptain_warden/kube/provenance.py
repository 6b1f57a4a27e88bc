"""Read what a request's Pod says about where an object came from: its notebook and the
namespace's Kubeflow Profile owner, cached and within the review's lookup deadline.

Every lookup is a GET by a name the API server vouched for (the bound token's Pod) or the
review's own namespace, checked as DNS-1123 before it goes into a path; the client never
retries; a Pod whose uid is not the token's is not the creator. A lookup that fails or runs
out of time leaves its key unresolved: the object goes without it, nothing is blocked.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client as k8s

from kaptain_warden.kube.client import METADATA_ONLY, get_json, resource_path
from kaptain_warden.kube.errors import ApiError, describe_error
from kaptain_warden.policies.metadata import (
    KUBEFLOW_PROFILE_GROUP,
    KUBEFLOW_PROFILE_RESOURCE,
    KUBEFLOW_PROFILE_VERSION,
    NOTEBOOK_API_VERSION,
    NOTEBOOK_KIND,
    NOTEBOOK_POD_LABEL,
    MetadataKeys,
)
from kaptain_warden.policies.names import is_dns1123_label, is_dns1123_subdomain
from kaptain_warden.policies.objects import metadata_of, string_map
from kaptain_warden.policies.provenance import CreatorPod, Provenance, is_provenance_value

logger = logging.getLogger(__name__)

# An API error, or the review's deadline passed before a request could go.
_FAILURES = (ApiError, TimeoutError)


class _OutOfTimeError(TimeoutError):
    """The review's lookup deadline has passed."""


class ProvenanceResolver:
    """Finds the notebook of a creator Pod and the person owning its namespace's Profile."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        keys: MetadataKeys,
        budget_seconds: float = 1.0,
        ttl_seconds: float = 30.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        configuration = copy.deepcopy(api_client.configuration)
        # A retried GET would outlive the deadline and hold an admission thread the longer.
        configuration.retries = False
        self._api = k8s.ApiClient(configuration)
        self._keys = keys
        self.budget_seconds = budget_seconds
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[tuple[str, ...], tuple[float, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def provenance(
        self, *, namespace: str, pod: CreatorPod, deadline: float | None = None
    ) -> Provenance:
        """The provenance of an object created in `namespace` by `pod`'s token.

        `deadline` (this resolver's clock) is the review's; by default one budget from now.
        """
        if deadline is None:
            deadline = self._clock() + self.budget_seconds
        unresolved: set[str] = set()
        notebook = profile_owner = None
        try:
            notebook = self._cached(
                ("pod", namespace, pod.uid), lambda: self._notebook(namespace, pod, deadline)
            )
        except _FAILURES as exc:
            unresolved.add(self._keys.notebook)
            _log_failure("notebook", namespace, pod, exc)
        try:
            profile_owner = self._cached(
                ("profile", namespace), lambda: self._profile_owner(namespace, deadline)
            )
        except _FAILURES as exc:
            unresolved.add(self._keys.profile_owner)
            _log_failure("profile owner", namespace, pod, exc)
        return Provenance(
            pod=pod,
            notebook=notebook,
            profile_owner=profile_owner,
            unresolved=frozenset(unresolved),
        )

    def _cached(self, key: tuple[str, ...], read: Callable[[], str | None]) -> str | None:
        now = self._clock()
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and entry[0] > now:
                self._cache.move_to_end(key)
                return entry[1]
        value = read()  # raises on failure: failures are not cached
        with self._lock:
            self._cache[key] = (now + self._ttl, value)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return value

    def _get(self, path: str, deadline: float, *, metadata_only: bool) -> Mapping[str, Any] | None:
        """The object at `path`, or None when it does not exist."""
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise _OutOfTimeError("the review's lookup deadline has passed")
        accept = METADATA_ONLY if metadata_only else "application/json"
        try:
            found = get_json(self._api, path, accept=accept, timeout=remaining)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return found if isinstance(found, Mapping) else None

    def _notebook(self, namespace: str, pod: CreatorPod, deadline: float) -> str | None:
        """The Notebook the Pod runs for: its `notebook-name` label, else the owner of the
        StatefulSet that owns it; None for a Pod that is no notebook's (or not this uid)."""
        if not is_dns1123_label(namespace) or not is_dns1123_subdomain(pod.name):
            return None
        found = self._get(
            resource_path(
                group="", version="v1", resource="pods", namespace=namespace, name=pod.name
            ),
            deadline,
            metadata_only=True,
        )
        if found is None or metadata_of(found).get("uid") != pod.uid:
            return None
        label = string_map(metadata_of(found).get("labels")).get(NOTEBOOK_POD_LABEL)
        if label is not None and is_dns1123_subdomain(label):
            return label
        statefulset = _controller(found, "apps/v1", "StatefulSet")
        if statefulset is None:
            return None
        owner = self._get(
            resource_path(
                group="apps",
                version="v1",
                resource="statefulsets",
                namespace=namespace,
                name=statefulset[0],
            ),
            deadline,
            metadata_only=True,
        )
        if owner is None or metadata_of(owner).get("uid") != statefulset[1]:
            return None
        notebook = _controller(owner, NOTEBOOK_API_VERSION, NOTEBOOK_KIND)
        return notebook[0] if notebook is not None else None

    def _profile_owner(self, namespace: str, deadline: float) -> str | None:
        """`spec.owner.name` of the Profile named like the namespace, if there is one."""
        if not is_dns1123_label(namespace):
            return None
        found = self._get(
            resource_path(
                group=KUBEFLOW_PROFILE_GROUP,
                version=KUBEFLOW_PROFILE_VERSION,
                resource=KUBEFLOW_PROFILE_RESOURCE,
                name=namespace,
            ),
            deadline,
            metadata_only=False,
        )
        spec = found.get("spec") if found is not None else None
        owner = spec.get("owner") if isinstance(spec, Mapping) else None
        name = owner.get("name") if isinstance(owner, Mapping) else None
        return name if is_provenance_value(name) else None


def _controller(obj: Mapping[str, Any], api_version: str, kind: str) -> tuple[str, str] | None:
    """(name, uid) of the object's controller ownerReference of that kind, if it has one."""
    refs = metadata_of(obj).get("ownerReferences")
    for ref in refs if isinstance(refs, list) else ():
        if (
            isinstance(ref, Mapping)
            and ref.get("controller") is True
            and ref.get("apiVersion") == api_version
            and ref.get("kind") == kind
            and is_dns1123_subdomain(ref.get("name"))
            and isinstance(ref.get("uid"), str)
        ):
            return str(ref["name"]), str(ref["uid"])
    return None


def _log_failure(what: str, namespace: str, pod: CreatorPod, exc: Exception) -> None:
    logger.warning(
        "provenance lookup of the %s failed; the object goes without it: %s",
        what,
        describe_error(exc),
        extra={"namespace": namespace, "pod": pod.name, "pod_uid": pod.uid},
    )
