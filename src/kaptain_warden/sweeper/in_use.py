"""Which live workloads hold which Secrets, read per namespace before any Secret is deleted."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.errors import ApiError, describe_error
from kaptain_warden.kube.listing import KindNotServedError, ListRequest, list_all
from kaptain_warden.policies.kinds import HOLDER_KINDS, KnownKind
from kaptain_warden.policies.secret_refs import secret_references, volume_secret_references

__all__ = ["SecretHolders", "find_secret_holders"]

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


def find_secret_holders(
    api: KubeApi,
    *,
    namespaces: Iterable[str],
    page_size: int = 500,
    volumes_optional: bool = False,
) -> SecretHolders:
    """List each namespace's pods, pod templates and ServiceAccounts, and index their Secrets.

    Only the namespaces that have a Secret to delete are read. A kind the API server does not
    serve (no training-operator CRDs, say) holds nothing; any other error marks the namespace
    unreadable, and the caller keeps its Secrets (never delete on doubt). PersistentVolumes are
    listed once, cluster-wide; when they cannot be, every namespace is unreadable, unless
    `volumes_optional` (a dry run by an identity that may not list them, such as a notebook
    user's `ls`) and the API server said 403: then they are left out.
    """
    result = SecretHolders()
    wanted = sorted(set(namespaces))
    volumes: dict[str, dict[str, list[str]]] = {}
    for holder in (h for h in HOLDER_KINDS if h.cluster_scoped):
        try:
            _index_volumes(api, holder, page_size, volumes)
        except ApiError as exc:
            if volumes_optional and getattr(exc, "status", None) == 403:
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
    for namespace in wanted:
        index: dict[str, list[str]] = {
            secret: list(names) for secret, names in volumes.get(namespace, {}).items()
        }
        for holder in (h for h in HOLDER_KINDS if not h.cluster_scoped):
            request = ListRequest(
                api_version=holder.api_version,
                kind=holder.kind,
                resource=holder.resource,
                namespaces=(namespace,),
                metadata_only=False,
                keep=("spec", "status", "secrets", "imagePullSecrets"),
                page_size=page_size,
            )
            try:
                objects = list_all(api, request)
            except KindNotServedError:
                continue
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
                break
            for obj in objects:
                holder_name = f"{holder.kind}/{obj['metadata'].get('name', '')}"
                for secret in sorted(secret_references(obj, holder)):
                    index.setdefault(secret, []).append(holder_name)
        else:
            result.holders[namespace] = index
    return result


def _index_volumes(
    api: KubeApi, holder: KnownKind, page_size: int, into: dict[str, dict[str, list[str]]]
) -> None:
    """Index the Secrets cluster-scoped holders (PersistentVolumes) name, by namespace."""
    request = ListRequest(
        api_version=holder.api_version,
        kind=holder.kind,
        resource=holder.resource,
        metadata_only=False,
        keep=("spec",),
        page_size=page_size,
    )
    try:
        objects = list_all(api, request)
    except KindNotServedError:
        return
    for obj in objects:
        name = f"{holder.kind}/{obj['metadata'].get('name', '')}"
        for namespace, secret in sorted(volume_secret_references(obj)):
            into.setdefault(namespace, {}).setdefault(secret, []).append(name)
