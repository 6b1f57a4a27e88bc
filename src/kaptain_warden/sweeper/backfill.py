"""Backfill: stamp governed objects the webhook missed (an outage, or made before the install),
with the owner the best evidence in the cluster names."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from kaptain_warden.kube.api import KubeApi, patch_listed
from kaptain_warden.kube.client import resource_path
from kaptain_warden.kube.errors import ApiError, describe_error, error_status
from kaptain_warden.kube.listing import KindNotServedError, ListRequest, list_all
from kaptain_warden.policies.evaluate import Subject, find_backfill_rule
from kaptain_warden.policies.inheritance import parent_refs
from kaptain_warden.policies.kinds import KnownKind
from kaptain_warden.policies.metadata import (
    KNATIVE_CREATOR,
    KUBEFLOW_NAMESPACE_OWNER,
    KUBEFLOW_PROFILE_GROUP,
    KUBEFLOW_PROFILE_RESOURCE,
    KUBEFLOW_PROFILE_VERSION,
)
from kaptain_warden.policies.model import Policy, Rule
from kaptain_warden.policies.objects import metadata_of, string_map
from kaptain_warden.policies.stamping import plan_stamp
from kaptain_warden.policies.timestamps import format_time, parse_time
from kaptain_warden.sweeper.report import ReportEntry

__all__ = [
    "UNKNOWN_OWNER",
    "Attribution",
    "BackfillResult",
    "NamespaceOwners",
    "OwnerResolver",
    "attribute",
    "backfill",
]

logger = logging.getLogger(__name__)

#: The owner of a backfilled object nothing in the cluster attributes.
UNKNOWN_OWNER = "unknown"
#: Where an owner came from, best first: a managed parent's owner, the creator the object
#: records, the namespace's owner, nothing.
Evidence = Literal["parent", "creator", "namespace", "none"]
#: (namespace, object) -> the owner annotation of its nearest managed ancestor, or None.
OwnerResolver = Callable[[str, Mapping[str, Any]], str | None]
_EVIDENCE: dict[Evidence, str] = {
    "parent": "its managed parent",
    "creator": "the creator it records",
    "namespace": "the namespace's owner",
    "none": "no evidence",
}
# A Secret whose type is none of the policy's secretTypes (listed without a type filter).
_OTHER_TYPE = "(not among the policy's secretTypes)"


@dataclass
class BackfillResult:
    """What backfill did: objects stamped, dry-run entries for the report, and errors."""

    stamped: int = 0
    entries: list[ReportEntry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Attribution:
    """Who owns an object the webhook missed, and the evidence that says so."""

    owner: str
    evidence: Evidence


def attribute(
    rule: Rule, *, inherited: str | None, creator: str | None, namespace_owner: str | None
) -> Attribution:
    """The owner of a backfilled object from the best evidence, in this order: the owner of a
    managed parent (when the rule inherits), the creator the object records, the namespace's
    owner, else `unknown`."""
    if rule.match.inherit and inherited:
        return Attribution(inherited, "parent")
    if creator:
        return Attribution(creator, "creator")
    if namespace_owner:
        return Attribution(namespace_owner, "namespace")
    return Attribution(UNKNOWN_OWNER, "none")


@dataclass
class _Namespace:
    labels: Mapping[str, str] | None
    owner: str | None
    # Why the owner could not be read (then objects that depend on it wait for a later pass).
    unreadable: str | None = None


class NamespaceOwners:
    """Each namespace's labels and owner, read once per pass.

    The owner is the Kubeflow Profile's `spec.owner.name` (the Profile is named like the
    namespace), else the namespace's `owner` annotation (which the profile controller writes).
    A namespace nobody owns has None. Namespaces are cluster-scoped and Profiles are made by
    administrators or the profile controller: tenants cannot write either.
    """

    def __init__(self, api: KubeApi) -> None:
        self._api = api
        self._seen: dict[str, _Namespace] = {}

    def get(self, namespace: str) -> _Namespace:
        """The namespace's facts (cached for the life of this object: one pass)."""
        if namespace not in self._seen:
            self._seen[namespace] = self._read(namespace)
        return self._seen[namespace]

    def _read(self, namespace: str) -> _Namespace:
        path = resource_path(group="", version="v1", resource="namespaces", name=namespace)
        try:
            ns = self._api.get(path)
        except ApiError as exc:
            return _Namespace(
                None, None, f"cannot read namespace {namespace}: {describe_error(exc)}"
            )
        meta = metadata_of(ns) if isinstance(ns, Mapping) else {}
        labels = string_map(meta.get("labels"))
        profile_path = resource_path(
            group=KUBEFLOW_PROFILE_GROUP,
            version=KUBEFLOW_PROFILE_VERSION,
            resource=KUBEFLOW_PROFILE_RESOURCE,
            name=namespace,
        )
        try:
            profile = self._api.get(profile_path)
        except ApiError as exc:
            if error_status(exc) != 404:  # 404: no such Profile, or Profiles are not served
                return _Namespace(
                    labels, None, f"cannot read Profile {namespace}: {describe_error(exc)}"
                )
            profile = None
        spec = profile.get("spec") if isinstance(profile, Mapping) else None
        owner_ref = spec.get("owner") if isinstance(spec, Mapping) else None
        owner = _text(owner_ref.get("name")) if isinstance(owner_ref, Mapping) else None
        if owner is None:
            owner = _text(string_map(meta.get("annotations")).get(KUBEFLOW_NAMESPACE_OWNER))
        return _Namespace(labels, owner)


def _text(value: Any) -> str | None:
    """A usable identity: a non-empty string of sane length, else None."""
    if isinstance(value, str) and value.strip() and len(value) <= 512:
        return value
    return None


def backfill(
    api: KubeApi,
    *,
    policy: Policy,
    namespaces: Sequence[str],
    dry_run: bool,
    now: datetime,
    resolve_owner: OwnerResolver,
    page_size: int = 500,
    created_after: datetime | None = None,
) -> BackfillResult:
    """Find governed objects without the `managed` label and stamp them with a merge patch.

    Who made an object is not known afterwards, so it is attributed from the best evidence
    (`attribute`): the managed parent's owner, the creator the object records (Knative's
    `serving.knative.dev/creator`, written by Knative's own webhook), the namespace's owner.
    Rules match on what was attributed (`find_backfill_rule`); a rule's `backfill` setting
    says whether an object whose creator stays unknown is governed anyway. An object no rule
    governs is left alone, and so is one created before `created_after` (when the warden's
    webhook was registered: older objects predate the install, they were not missed).

    The stamp is computed afresh: the system keys (owner, rule, created-at, expires-at and
    `backfilled-at`, all at `now`) overwrite whatever the object carries, so the TTL counts
    from the stamp; valid user keys (ttl, ttl-after-finished, keep) are honoured. The patch
    carries the object's resourceVersion, so a concurrent change makes it fail (409) and the
    next pass looks again. Native TTL fields are not touched: the sweeper enforces what the
    annotations say.
    """
    result = BackfillResult()
    owners = NamespaceOwners(api)
    for kind in policy.kinds:
        try:
            objects = _list_unmanaged(api, kind, policy, namespaces, page_size)
        except KindNotServedError:
            continue
        except ApiError as exc:
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
            if created_after is not None:
                created = parse_time(meta.get("creationTimestamp"))
                if created is None or created < created_after:
                    continue
            try:
                _backfill_one(
                    api,
                    kind=kind,
                    obj=obj,
                    policy=policy,
                    owners=owners,
                    now=now,
                    dry_run=dry_run,
                    resolve_owner=resolve_owner,
                    result=result,
                )
            except Exception as exc:  # one object never stops the backfill
                where = {"kind": kind.kind, "namespace": namespace, "object": meta.get("name")}
                if isinstance(exc, ApiError):
                    logger.warning(
                        "backfill failed for this object: %s", describe_error(exc), extra=where
                    )
                else:
                    logger.exception("backfill failed for this object", extra=where)
                result.errors.append(
                    f"backfill: {kind.kind} {namespace}/{meta.get('name')}: {describe_error(exc)}"
                )
    return result


def _backfill_one(
    api: KubeApi,
    *,
    kind: KnownKind,
    obj: dict[str, Any],
    policy: Policy,
    owners: NamespaceOwners,
    now: datetime,
    dry_run: bool,
    resolve_owner: OwnerResolver,
    result: BackfillResult,
) -> None:
    meta = obj["metadata"]
    namespace = str(meta.get("namespace", ""))
    creator = _text(string_map(meta.get("annotations")).get(KNATIVE_CREATOR))
    inherited = resolve_owner(namespace, obj) if parent_refs(obj) else None
    facts = owners.get(namespace)
    subject = Subject(
        api_version=kind.api_version,
        kind=kind.kind,
        namespace=namespace,
        obj=obj,
        username=creator or "",
        namespace_labels=facts.labels,
        inherited_owner=inherited,
    )
    attributed = bool(creator or inherited)
    if not attributed and facts.unreadable:
        # Whether a rule governs it anyway depends on the namespace's owner: not on doubt.
        if facts.unreadable not in result.errors:
            result.errors.append(f"backfill: {facts.unreadable}")
            logger.warning(
                "backfill leaves this namespace's unattributed objects for a later pass: %s",
                facts.unreadable,
                extra={"namespace": namespace},
            )
        return
    rule = find_backfill_rule(
        policy, subject, attributed=attributed, namespace_owned=facts.owner is not None
    )
    if rule is None:
        return
    attribution = attribute(rule, inherited=inherited, creator=creator, namespace_owner=facts.owner)
    _stamp(
        api,
        kind=kind,
        obj=obj,
        policy=policy,
        rule=rule,
        attribution=attribution,
        now=now,
        dry_run=dry_run,
        result=result,
    )


def _stamp(
    api: KubeApi,
    *,
    kind: KnownKind,
    obj: dict[str, Any],
    policy: Policy,
    rule: Rule,
    attribution: Attribution,
    now: datetime,
    dry_run: bool,
    result: BackfillResult,
) -> None:
    meta = obj["metadata"]
    keys = policy.keys
    owner = attribution.owner
    # Nothing the object says about its own stamp is trusted: a created-at or expires-at
    # written while the webhook was away would shorten (or stretch) the TTL.
    annotations = string_map(meta.get("annotations"))
    trusted = {k: v for k, v in annotations.items() if k not in keys.system_annotations}
    stamp = plan_stamp(
        policy=policy,
        rule=rule,
        obj={**obj, "metadata": {**meta, "annotations": trusted}},
        owner=owner,
        now=now,
    )
    patch_labels = stamp.labels
    # Other system keys the object carries were not written by the warden: removed (null in
    # a merge patch), so e.g. a forged warned-at cannot silence the expiry warning.
    forged: dict[str, str | None] = {k: None for k in annotations if k in keys.system_annotations}
    patch_annotations = {**forged, **stamp.annotations, keys.backfilled_at: format_time(now)}
    fields = {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "namespace": meta.get("namespace"),
        "object": meta.get("name"),
        "uid": meta.get("uid"),
        "rule": rule.id,
        "owner": owner,
        "attribution": attribution.evidence,
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
                reason=f"unmanaged: backfill would stamp it now (rule {rule.id!r}, owner "
                f"from {_EVIDENCE[attribution.evidence]})",
                expires_at=expires,
            )
        )
        return
    if not patch_listed(
        api,
        kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        resource_version=meta.get("resourceVersion"),
        labels=patch_labels,
        annotations=patch_annotations,
    ):
        logger.info(
            "backfill skipped: the object changed or went away; the next pass looks again",
            extra=fields,
        )
        return
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
    request = ListRequest.of(
        kind,
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
