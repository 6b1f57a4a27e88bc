"""Which live workloads hold which Secrets, read per namespace before any Secret is deleted."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.errors import ApiError, describe_error
from kaptain_warden.kube.listing import KindNotServedError, ListRequest, list_each
from kaptain_warden.policies.kinds import HOLDER_KINDS, KnownKind
from kaptain_warden.policies.secret_refs import secret_references, volume_secret_references

__all__ = ["CLUSTER_WIDE_FROM", "ListedHolders", "SecretHolders", "find_secret_holders"]

logger = logging.getLogger(__name__)


@dataclass
class SecretHolders:
    """Holders by namespace and Secret name, and the namespaces that could not be read."""

    holders: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # namespace -> why its workloads could not be read (its Secrets are then kept).
    unreadable: dict[str, str] = field(default_factory=dict)

    def of(self, namespace: str, secret: str) -> list[str]:
        """`Kind/name` of every live holder of `secret` in `namespace`."""
        return self.holders.get(namespace, {}).get(secret, [])


@dataclass
class ListedHolders:
    """Holders already read in this pass, whole, by the list of a governed kind that also
    holds Secrets (Jobs, training jobs, Experiments, ...): that kind is not listed again.

    `namespaces` are the ones indexed (those with a Secret due); `kinds` are the
    (apiVersion, kind) pairs read completely; `index` is namespace -> Secret -> holders.
    """

    namespaces: frozenset[str]
    kinds: set[tuple[str, str]] = field(default_factory=set)
    index: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def references(
        self, holder: KnownKind, obj: dict[str, Any]
    ) -> tuple[str, str, frozenset[str]] | None:
        """(namespace, `Kind/name`, Secrets) of a listed object in an indexed namespace that
        references Secrets, else None (what `add` takes once its list is complete)."""
        namespace = obj["metadata"].get("namespace", "")
        if namespace not in self.namespaces:
            return None
        secrets = secret_references(obj, holder)
        if not secrets:
            return None
        return (namespace, f"{holder.kind}/{obj['metadata'].get('name', '')}", secrets)

    def add(self, holder: KnownKind, references: Iterable[tuple[str, str, frozenset[str]]]) -> None:
        """Record `holder`'s kind as read whole, with the references its list found."""
        self.kinds.add((holder.api_version, holder.kind))
        for namespace, name, secrets in references:
            for secret in sorted(secrets):
                self.index.setdefault(namespace, {}).setdefault(secret, []).append(name)


#: From this many namespaces with a Secret due on, each holder kind is listed once across the
#: cluster (streamed, page by page, indexing only those namespaces) instead of once per
#: namespace: 16 kinds x N namespaces requests become 16 x pages. Revision retention reads
#: Configurations and InferenceServices the same way from this many on.
CLUSTER_WIDE_FROM = 3


def find_secret_holders(
    api: KubeApi,
    *,
    namespaces: Iterable[str],
    page_size: int = 500,
    volumes_optional: bool = False,
    excluded_namespaces: Collection[str] = (),
    listed: ListedHolders | None = None,
) -> SecretHolders:
    """List each namespace's pods, pod templates and ServiceAccounts, and index their Secrets.

    Only the namespaces that have a Secret to delete are indexed: one list per namespace and
    kind, or, for `CLUSTER_WIDE_FROM` namespaces or more, one list per kind across the cluster
    (but `excluded_namespaces`); when that list fails, that kind is read namespace by
    namespace instead (an identity that may only read some namespaces, such as a user's). Pages
    are streamed: only the Secret names each holder references are kept. A kind the API
    server does not serve (no training-operator CRDs, say) holds nothing; any other error
    marks the namespace unreadable, and the caller keeps its Secrets (never delete on doubt).
    PersistentVolumes are listed once, cluster-wide; when they cannot be, every namespace is
    unreadable, unless `volumes_optional` (a dry run by an identity that may not list them,
    such as a notebook user's `ls`) and the API server said 403: then they are left out.
    Kinds in `listed` (read whole by this pass already, for every namespace wanted here) are
    not listed again: their references are taken from it.
    """
    result = SecretHolders()
    wanted = sorted(set(namespaces))
    if not wanted:
        return result
    index: dict[str, dict[str, list[str]]] = {namespace: {} for namespace in wanted}
    done: set[tuple[str, str]] = set()
    if listed is not None and listed.namespaces.issuperset(wanted):
        done = listed.kinds
        for namespace in wanted:
            for secret, names in listed.index.get(namespace, {}).items():
                index[namespace].setdefault(secret, []).extend(names)
    for holder in (h for h in HOLDER_KINDS if h.cluster_scoped):
        try:
            _index_volumes(api, holder, page_size, index)
        except ApiError as exc:
            if volumes_optional and exc.status == 403:
                logger.warning(
                    "may not list %s: this dry run does not count the Secrets they use",
                    holder.resource,
                )
                continue
            reason = f"could not list {holder.resource}: {describe_error(exc)}"
            logger.warning(
                "cannot tell which Secrets volumes use; keeping every namespace's Secrets",
                extra={"resource": holder.resource, "error": describe_error(exc)},
            )
            result.unreadable = dict.fromkeys(wanted, reason)
            return result
    across = len(wanted) >= CLUSTER_WIDE_FROM
    for holder in (h for h in HOLDER_KINDS if not h.cluster_scoped):
        if (holder.api_version, holder.kind) in done:
            continue
        if across and _index_across(api, holder, page_size, excluded_namespaces, index):
            continue
        for namespace in wanted:
            if namespace in result.unreadable:
                continue
            request = _holder_request(holder, page_size, namespaces=(namespace,))
            try:
                _index(api, holder, request, index)
            except KindNotServedError:
                break  # served nowhere: no other namespace has any either
            except ApiError as exc:
                result.unreadable[namespace] = (
                    f"could not list {holder.resource} in {namespace}: {describe_error(exc)}"
                )
                logger.warning(
                    "cannot tell which Secrets are in use; keeping this namespace's Secrets",
                    extra={
                        "namespace": namespace,
                        "resource": holder.resource,
                        "error": describe_error(exc),
                    },
                )
    result.holders = {n: i for n, i in index.items() if n not in result.unreadable}
    return result


def _holder_request(
    holder: KnownKind,
    page_size: int,
    *,
    namespaces: Sequence[str] = (),
    excluded: Collection[str] = (),
) -> ListRequest:
    return ListRequest.of(
        holder,
        namespaces=namespaces,
        excluded_namespaces=excluded,
        metadata_only=False,
        keep=holder.read_fields,
        page_size=page_size,
    )


def _index(
    api: KubeApi,
    holder: KnownKind,
    request: ListRequest,
    index: dict[str, dict[str, list[str]]],
) -> None:
    """Add the Secrets each listed holder references to `index` (only its namespaces)."""

    def references(obj: dict[str, Any]) -> tuple[str, str, frozenset[str]] | None:
        namespace = obj["metadata"].get("namespace", "")
        if namespace not in index:
            return None
        secrets = secret_references(obj, holder)
        return (namespace, f"{holder.kind}/{obj['metadata'].get('name', '')}", secrets)

    # All or nothing: a namespace whose list fails halfway has no partial index.
    for namespace, name, secrets in list_each(api, request, references):
        for secret in sorted(secrets):
            index[namespace].setdefault(secret, []).append(name)


def _index_across(
    api: KubeApi,
    holder: KnownKind,
    page_size: int,
    excluded: Collection[str],
    index: dict[str, dict[str, list[str]]],
) -> bool:
    """One list of `holder` across the cluster; False when it failed (read per namespace)."""
    try:
        _index(api, holder, _holder_request(holder, page_size, excluded=excluded), index)
    except KindNotServedError:
        return True
    except ApiError as exc:
        logger.info(
            "cannot list %s across namespaces (%s); reading them namespace by namespace",
            holder.resource,
            describe_error(exc),
        )
        return False
    return True


def _index_volumes(
    api: KubeApi, holder: KnownKind, page_size: int, into: dict[str, dict[str, list[str]]]
) -> None:
    """Index the Secrets cluster-scoped holders (PersistentVolumes) name, in the namespaces of
    `into`."""
    request = ListRequest.of(
        holder,
        metadata_only=False,
        keep=("spec",),
        page_size=page_size,
    )

    def references(obj: dict[str, Any]) -> tuple[str, frozenset[tuple[str, str]]]:
        return (f"{holder.kind}/{obj['metadata'].get('name', '')}", volume_secret_references(obj))

    try:
        volumes = list_each(api, request, references)
    except KindNotServedError:
        return
    for name, references_ in volumes:
        for namespace, secret in sorted(references_):
            if namespace in into:
                into[namespace].setdefault(secret, []).append(name)
