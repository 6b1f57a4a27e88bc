"""Revision retention on the cluster: read Configurations and InferenceServices, then plan."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import kind_path
from kaptain_warden.kube.errors import ApiError, describe_error
from kaptain_warden.kube.listing import KindNotServedError, ListRequest, list_each
from kaptain_warden.policies.expiry import Protection
from kaptain_warden.policies.kinds import PARENT_LABELS, KnownKind
from kaptain_warden.policies.metadata import KNATIVE_CONFIGURATION_LABEL
from kaptain_warden.policies.model import Policy
from kaptain_warden.policies.retention import (
    RetentionSettings,
    RevisionVerdict,
    group_by_configuration,
    inference_service_revisions,
    plan_revision_retention,
)
from kaptain_warden.sweeper.in_use import CLUSTER_WIDE_FROM

__all__ = ["RevisionPlan", "plan_revisions"]

logger = logging.getLogger(__name__)

#: (namespace, name) -> the retention answer for that Revision: a verdict (a clock), or a
#: Protection when it could not be planned (kept on doubt, like a Secret in use).
RevisionPlan = dict[tuple[str, str], RevisionVerdict | Protection]

# A rule without `retention` still never deletes a revision Knative protects: its TTL is
# checked against this "collect nothing" plan, which only reports the protections.
_NO_RETENTION = RetentionSettings(None, None, None, None)
# The kinds a revision's labels name: its Configuration, and its InferenceService (one label
# per API group the InferenceService may be in).
_CONFIGURATION: KnownKind = dict(PARENT_LABELS)[KNATIVE_CONFIGURATION_LABEL]
_ISVC_LABELS = tuple(
    (label, kind) for label, kind in PARENT_LABELS if kind.kind == "InferenceService"
)


class _UnreadableError(Exception):
    """A Configuration or InferenceService could not be read; the message says which and why."""


def plan_revisions(
    api: KubeApi, *, revisions: Sequence[Mapping[str, Any]], policy: Policy, now: datetime
) -> RevisionPlan:
    """Plan retention for listed managed Revisions, per Configuration and per rule.

    Protected names are the Configuration's `status.latestReadyRevisionName` and the
    revisions each labelled InferenceService's status names (both API groups). When the
    Configuration or an InferenceService cannot be read, every revision of that
    Configuration is held (never delete on doubt); an InferenceService that does not exist
    protects nothing. Revisions without a Configuration label are held too.
    """
    plan: RevisionPlan = {}
    groups = group_by_configuration(revisions)
    grouped = {_key(r) for members in groups.values() for r in members}
    for revision in revisions:
        if _key(revision) not in grouped:
            plan[_key(revision)] = Protection(
                f"kept: no {KNATIVE_CONFIGURATION_LABEL} label: it belongs to no Configuration"
            )

    isvc_cache = _prefetch_isvcs(api, groups)
    latest_ready = _prefetch_latest_ready(api, set(groups))
    for (namespace, configuration), members in groups.items():
        try:
            plan.update(
                _plan_configuration(
                    api,
                    (namespace, configuration),
                    members,
                    policy=policy,
                    now=now,
                    isvc_cache=isvc_cache,
                    latest_ready=latest_ready,
                )
            )
        except _UnreadableError as exc:
            _hold_all(plan, members, namespace, configuration, str(exc))
        except Exception as exc:  # one Configuration's revisions never stop the others
            logger.exception(
                "could not plan retention",
                extra={"namespace": namespace, "configuration": configuration},
            )
            reason = f"retention could not be planned ({type(exc).__name__}: {exc})"
            _hold_all(plan, members, namespace, configuration, reason)
    return plan


def _plan_configuration(
    api: KubeApi,
    group: tuple[str, str],
    members: Sequence[Mapping[str, Any]],
    *,
    policy: Policy,
    now: datetime,
    isvc_cache: dict[tuple[str, str, str], frozenset[str]],
    latest_ready: Mapping[tuple[str, str], str | None] | None,
) -> RevisionPlan:
    """The retention answers for the revisions of one Configuration, (namespace, name).

    `latest_ready`: every Configuration's latest ready revision, listed at once (None: read
    this one); `isvc_cache`: InferenceServices already read.
    """
    namespace, configuration = group
    if latest_ready is None:
        latest = _latest_ready(api, namespace, configuration)
    elif group in latest_ready:
        latest = latest_ready[group]
    else:
        raise _UnreadableError(f"configuration {configuration} could not be read (not found)")
    protected: set[str] = set()
    for label, isvc in _ISVC_LABELS:
        for name in sorted({_labels(r).get(label, "") for r in members} - {""}):
            key = (namespace, isvc.api_version, name)
            if key not in isvc_cache:
                isvc_cache[key] = _isvc_revisions(api, namespace, isvc, name)
            protected |= isvc_cache[key]

    plan: RevisionPlan = {}
    by_rule: dict[str, list[Mapping[str, Any]]] = {}
    for revision in members:
        by_rule.setdefault(_labels(revision).get(policy.keys.rule, ""), []).append(revision)
    for rule_id, subgroup in by_rule.items():
        rule = policy.rule_by_id(rule_id) if rule_id else None
        if rule is None:
            continue  # `decide` keeps revisions whose rule is unknown
        verdicts = plan_revision_retention(
            revisions=subgroup,
            latest_ready_revision=latest,
            protected_names=protected,
            settings=rule.retention or _NO_RETENTION,
            now=now,
        )
        for revision, verdict in zip(subgroup, verdicts, strict=True):
            plan[_key(revision)] = verdict
    return plan


def _prefetch_latest_ready(
    api: KubeApi, wanted: set[tuple[str, str]]
) -> dict[tuple[str, str], str | None] | None:
    """Every wanted Configuration's `latestReadyRevisionName` from one list across the cluster
    (streamed: only that name is kept), when there are `CLUSTER_WIDE_FROM` or more; None when
    they are few or the list failed (then each is read by itself)."""
    if len(wanted) < CLUSTER_WIDE_FROM:
        return None
    request = ListRequest.of(_CONFIGURATION, metadata_only=False, keep=("status",))

    def latest(obj: dict[str, Any]) -> tuple[tuple[str, str], str | None] | None:
        key = _key(obj)
        return (key, _latest_of(obj)) if key in wanted else None

    try:
        return dict(list_each(api, request, latest))
    except (ApiError, KindNotServedError) as exc:
        logger.info("cannot list configurations at once (%s); reading each", exc)
        return None


def _prefetch_isvcs(
    api: KubeApi, groups: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]]
) -> dict[tuple[str, str, str], frozenset[str]]:
    """The revisions the labelled InferenceServices name, from one list per API group across
    the cluster when `CLUSTER_WIDE_FROM` or more are labelled; the others are read one by one
    (an InferenceService that is not listed does not exist: it protects nothing)."""
    cache: dict[tuple[str, str, str], frozenset[str]] = {}
    for label, isvc in _ISVC_LABELS:
        wanted = {
            (namespace, isvc.api_version, name)
            for (namespace, _), members in groups.items()
            for name in {_labels(r).get(label, "") for r in members} - {""}
        }
        if len(wanted) < CLUSTER_WIDE_FROM:
            continue
        request = ListRequest.of(isvc, metadata_only=False, keep=("status",))

        def named(
            obj: dict[str, Any], api_version: str = isvc.api_version
        ) -> tuple[tuple[str, str, str], frozenset[str]]:
            namespace, name = _key(obj)
            return ((namespace, api_version, name), inference_service_revisions(obj))

        try:
            listed = dict(list_each(api, request, named))
        except KindNotServedError:
            listed = {}  # that API group is not installed: nothing to protect
        except ApiError as exc:
            logger.info(
                "cannot list InferenceServices (%s) at once (%s); reading each", isvc.group, exc
            )
            continue
        cache |= {key: listed.get(key, frozenset()) for key in wanted}
    return cache


def _hold_all(
    plan: RevisionPlan,
    members: Sequence[Mapping[str, Any]],
    namespace: str,
    configuration: str,
    reason: str,
) -> None:
    logger.warning(
        "keeping every revision of a configuration: %s",
        reason,
        extra={"namespace": namespace, "configuration": configuration},
    )
    for revision in members:
        plan[_key(revision)] = Protection(f"kept: {reason}")


def _latest_ready(api: KubeApi, namespace: str, name: str) -> str | None:
    path = kind_path(_CONFIGURATION, namespace=namespace, name=name)
    try:
        configuration = api.get(path)
    except ApiError as exc:
        raise _UnreadableError(
            f"configuration {name} could not be read ({describe_error(exc)})"
        ) from exc
    return _latest_of(configuration)


def _latest_of(configuration: object) -> str | None:
    status = configuration.get("status") if isinstance(configuration, Mapping) else None
    latest = status.get("latestReadyRevisionName") if isinstance(status, Mapping) else None
    return latest if isinstance(latest, str) and latest else None


def _isvc_revisions(api: KubeApi, namespace: str, isvc: KnownKind, name: str) -> frozenset[str]:
    path = kind_path(isvc, namespace=namespace, name=name)
    try:
        obj = api.get(path)
    except ApiError as exc:
        if exc.status == 404:
            return frozenset()  # gone, or that API group is not installed: nothing to protect
        raise _UnreadableError(
            f"InferenceService {name} ({isvc.group}) could not be read ({describe_error(exc)})"
        ) from exc
    return inference_service_revisions(obj) if isinstance(obj, Mapping) else frozenset()


def _key(revision: Mapping[str, Any]) -> tuple[str, str]:
    meta = revision.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


def _labels(revision: Mapping[str, Any]) -> Mapping[str, str]:
    meta = revision.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}
