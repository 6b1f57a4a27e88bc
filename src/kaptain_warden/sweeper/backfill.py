"""Backfill: stamp governed objects that carry no warden metadata (made before the install)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from kaptain_warden.kube.client import resource_path
from kaptain_warden.policies.admission import plan_stamp
from kaptain_warden.policies.evaluate import Subject, find_rule, needs_namespace_labels
from kaptain_warden.policies.inheritance import parent_refs
from kaptain_warden.policies.kinds import KnownKind
from kaptain_warden.policies.metadata import KNATIVE_CREATOR
from kaptain_warden.policies.model import Policy, Rule
from kaptain_warden.policies.timestamps import parse_time
from kaptain_warden.sweeper.api import API_ERRORS, KubeApi, describe_error, error_status
from kaptain_warden.sweeper.listing import KindNotServedError, ListRequest, list_all
from kaptain_warden.sweeper.report import ReportEntry

__all__ = ["UNKNOWN_OWNER", "BackfillResult", "OwnerResolver", "backfill"]

logger = logging.getLogger(__name__)

#: The owner of a backfilled object whose creator cannot be inferred.
UNKNOWN_OWNER = "unknown"
#: (namespace, object) -> the owner annotation of its nearest managed ancestor, or None.
OwnerResolver = Callable[[str, Mapping[str, Any]], str | None]
# A Secret whose type is none of the policy's secretTypes (listed without a type filter).
_OTHER_TYPE = "(not among the policy's secretTypes)"


@dataclass
class BackfillResult:
    """What backfill did: objects stamped, dry-run entries for the report, and errors."""

    stamped: int = 0
    entries: list[ReportEntry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def backfill(
    api: KubeApi,
    *,
    policy: Policy,
    namespaces: Sequence[str],
    dry_run: bool,
    now: datetime,
    resolve_owner: OwnerResolver,
    page_size: int = 500,
) -> BackfillResult:
    """Find governed objects without the `managed` label and stamp them with a merge patch.

    Objects are matched like at admission (`find_rule`), with what is known afterwards: the
    parents' owner (inheritance) and Knative's `serving.knative.dev/creator` as the
    requester. An object no rule matches is left alone. The patch adds only the keys that
    are missing and carries the object's resourceVersion, so a concurrent change makes it
    fail (409) and the next pass looks again. Native TTL fields are not touched: the sweeper
    enforces what the annotations say.
    """
    result = BackfillResult()
    keys = policy.keys
    namespace_labels: dict[str, Mapping[str, str] | None] = {}
    for kind in policy.kinds:
        try:
            objects = _list_unmanaged(api, kind, policy, namespaces, page_size)
        except KindNotServedError:
            continue
        except API_ERRORS as exc:
            result.errors.append(f"backfill: listing {kind.resource}: {describe_error(exc)}")
            logger.warning(
                "backfill could not list %s: %s",
                kind.resource,
                describe_error(exc),
                extra={"apiVersion": kind.api_version},
            )
            continue
        for obj in objects:
            meta = obj["metadata"]
            namespace = str(meta.get("namespace", ""))
            try:
                if needs_namespace_labels(policy) and namespace not in namespace_labels:
                    namespace_labels[namespace] = _namespace_labels(api, namespace)
                annotations = meta.get("annotations") or {}
                creator = annotations.get(KNATIVE_CREATOR) or None
                inherited = resolve_owner(namespace, obj) if parent_refs(obj) else None
                subject = Subject(
                    api_version=kind.api_version,
                    kind=kind.kind,
                    namespace=namespace,
                    obj=obj,
                    username=creator or "",
                    namespace_labels=namespace_labels.get(namespace),
                    inherited_owner=inherited,
                )
                rule = find_rule(policy, subject)
                if rule is None:
                    continue
                owner = annotations.get(keys.owner) or _owner(rule, inherited, creator)
                _stamp(
                    api,
                    kind=kind,
                    obj=obj,
                    policy=policy,
                    rule=rule,
                    owner=owner,
                    now=now,
                    dry_run=dry_run,
                    result=result,
                )
            except Exception as exc:  # one object never stops the backfill
                where = {"kind": kind.kind, "namespace": namespace, "object": meta.get("name")}
                if isinstance(exc, API_ERRORS):
                    logger.warning(
                        "backfill failed for this object: %s", describe_error(exc), extra=where
                    )
                else:
                    logger.exception("backfill failed for this object", extra=where)
                result.errors.append(
                    f"backfill: {kind.kind} {namespace}/{meta.get('name')}: {describe_error(exc)}"
                )
    return result


def _owner(rule: Rule, inherited: str | None, creator: str | None) -> str:
    """The requester is not known any more: the managed parent's owner when the rule
    inherits, else Knative's creator annotation, else `unknown`."""
    if rule.match.inherit and inherited:
        return inherited
    return creator or UNKNOWN_OWNER


def _stamp(
    api: KubeApi,
    *,
    kind: KnownKind,
    obj: dict[str, Any],
    policy: Policy,
    rule: Rule,
    owner: str,
    now: datetime,
    dry_run: bool,
    result: BackfillResult,
) -> None:
    meta = obj["metadata"]
    stamp = plan_stamp(policy=policy, rule=rule, obj=obj, owner=owner, now=now)
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    patch_labels = {k: v for k, v in stamp.labels.items() if k not in labels}
    patch_annotations = {k: v for k, v in stamp.annotations.items() if k not in annotations}
    fields = {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "namespace": meta.get("namespace"),
        "object": meta.get("name"),
        "uid": meta.get("uid"),
        "rule": rule.id,
        "owner": owner,
        "dryRun": dry_run,
    }
    expires = parse_time(stamp.annotations.get(policy.keys.expires_at))
    if dry_run:
        logger.info(
            "DRY RUN, NOT STAMPED: backfill would stamp %s %s/%s",
            kind.kind,
            meta.get("namespace"),
            meta.get("name"),
            extra=fields,
        )
        result.entries.append(
            ReportEntry(
                api_version=kind.api_version,
                kind=kind.kind,
                namespace=str(meta.get("namespace", "")),
                name=str(meta.get("name", "")),
                uid=str(meta.get("uid", "")),
                rule=rule.id,
                owner=owner,
                action="keep",
                reason=f"unmanaged: backfill would stamp it now (rule {rule.id!r})",
                expires_at=expires,
            )
        )
        return
    body = {
        "metadata": {
            # Optimistic concurrency: a merge patch carrying resourceVersion fails with 409
            # when the object changed since it was listed.
            "resourceVersion": meta.get("resourceVersion"),
            "labels": patch_labels,
            "annotations": patch_annotations,
        }
    }
    path = resource_path(
        group=kind.group,
        version=kind.version,
        resource=kind.resource,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
    )
    try:
        api.request("PATCH", path, body=body, content_type="application/merge-patch+json")
    except API_ERRORS as exc:
        if error_status(exc) in (404, 409):
            logger.info(
                "backfill skipped: the object changed or went away; the next pass looks again",
                extra=fields | {"error": describe_error(exc)},
            )
            return
        raise
    result.stamped += 1
    logger.info(
        "backfill stamped %s %s/%s",
        kind.kind,
        meta.get("namespace"),
        meta.get("name"),
        extra=fields,
    )


def _list_unmanaged(
    api: KubeApi, kind: KnownKind, policy: Policy, namespaces: Sequence[str], page_size: int
) -> list[dict[str, Any]]:
    """Metadata-only lists of `kind` without the managed label.

    Rules may match Secrets by `type`, which metadata-only lists omit, and full Secret lists
    would carry their data: Secrets are listed once per type the policy names (field
    selector `type=`), then once more for the rest when a Secret rule matches any type.
    """
    request = ListRequest(
        api_version=kind.api_version,
        kind=kind.kind,
        resource=kind.resource,
        label_selector=f"!{policy.keys.managed}",
        namespaces=namespaces,
        excluded_namespaces=policy.settings.all_excluded_namespaces,
        page_size=page_size,
    )
    if not (kind.api_version == "v1" and kind.kind == "Secret"):
        return list_all(api, request)
    rules = [r for r in policy.rules if r.governs_kind("v1", "Secret")]
    types = sorted({t for r in rules for t in r.match.secret_types})
    seen: dict[str, dict[str, Any]] = {}
    for secret_type in types:
        typed = replace(request, field_selector=f"type={secret_type}")
        for obj in list_all(api, typed):
            obj["type"] = secret_type
            seen[str(obj["metadata"].get("uid"))] = obj
    if any(not r.match.secret_types for r in rules):
        for obj in list_all(api, request):
            seen.setdefault(str(obj["metadata"].get("uid")), {**obj, "type": _OTHER_TYPE})
    return list(seen.values())


def _namespace_labels(api: KubeApi, namespace: str) -> Mapping[str, str] | None:
    try:
        ns = api.get(resource_path(group="", version="v1", resource="namespaces", name=namespace))
    except API_ERRORS as exc:
        logger.warning(
            "cannot read namespace labels: %s",
            describe_error(exc),
            extra={"namespace": namespace},
        )
        return None
    labels = (ns.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, Mapping) else {}
