"""The sweeper's least-privilege RBAC rules, generated from the policy for tests and chart."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from kaptain_warden.policies.kinds import HOLDER_KINDS, PARENT_ONLY_KINDS, ApiVersioned
from kaptain_warden.policies.metadata import KUBEFLOW_PROFILE_GROUP, KUBEFLOW_PROFILE_RESOURCE
from kaptain_warden.policies.model import Policy

__all__ = [
    "sweeper_cluster_rules",
    "sweeper_lease_rules",
    "webhook_parent_rules",
    "webhook_provenance_rules",
]


def sweeper_cluster_rules(
    policy: Policy, *, backfill: bool = False, backfill_since_webhook: str | None = None
) -> list[dict[str, Any]]:
    """ClusterRole rules that let the sweeper do everything it does under `policy`, no more.

    - governed kinds: `list` (label-selected; paginated, or streamed, which also needs
      `watch`, for a custom resource) and `delete`; `patch` and `get`
      only with backfill (it stamps objects, and reads parents for their owner), never `get`
      on a kind that is never a parent (Secrets); `patch` on the kinds of rules that warn
      before expiry (`warnBefore` not `0`: it writes `warned-at`) and of rules with
      `expireWhenCreatorGone` (it writes `creator-gone-at`), and then `list` on pods
      (metadata only: is the creator there?);
    - `get` on what the registry says the sweeper reads to decide about a governed kind
      (`sweeper_reads`: a Revision's Configuration and InferenceServices);
    - kinds kept while referenced governed (Secrets): `list` (and `watch` on custom
      resources) on the registry's Secret holders
      (pods, ServiceAccounts, workloads with pod templates), read before one is deleted;
    - `create` on events.k8s.io Events, one per deletion;
    - backfill: `get` on namespaces (labels, the `owner` annotation) and on Kubeflow
      Profiles (their owner); with `backfill_since_webhook`, `get` on that one
      MutatingWebhookConfiguration (when the webhook was registered).

    Rules are grouped per API group, sorted, so the output is stable for the chart's tests.
    """
    verbs: dict[tuple[str, str], set[str]] = defaultdict(set)
    kinds = policy.kinds
    for kind in kinds:
        verbs[(kind.group, kind.resource)] |= {*_list_verbs(kind), "delete"}
        if backfill:
            # Parents are read for their owner; a Secret is never one, and its data is not
            # the sweeper's to read (backfill lists and patches it as metadata only).
            verbs[(kind.group, kind.resource)] |= {"get", "patch"} if kind.parent else {"patch"}
        for group, resource in kind.sweeper_reads:
            verbs[(group, resource)].add("get")
    for rule in policy.rules:
        if rule.warn_before is None or rule.warn_before > timedelta(0):
            for kind in rule.match.kinds:
                verbs[(kind.group, kind.resource)].add("patch")
        if rule.expire_when_creator_gone is not None:
            for kind in rule.match.kinds:
                verbs[(kind.group, kind.resource)].add("patch")
            verbs[("", "pods")].add("list")
    if any(k.kept_while_referenced for k in kinds):
        for holder in HOLDER_KINDS:
            verbs[(holder.group, holder.resource)] |= _list_verbs(holder)
    if backfill:
        verbs[("", "namespaces")].add("get")
        verbs[(KUBEFLOW_PROFILE_GROUP, KUBEFLOW_PROFILE_RESOURCE)].add("get")
    verbs[("events.k8s.io", "events")].add("create")

    by_group: dict[str, dict[frozenset[str], list[str]]] = defaultdict(lambda: defaultdict(list))
    for (group, resource), resource_verbs in verbs.items():
        by_group[group][frozenset(resource_verbs)].append(resource)
    rules: list[dict[str, Any]] = []
    for group in sorted(by_group):
        for verb_set, resources in sorted(
            by_group[group].items(), key=lambda item: sorted(item[0])
        ):
            rules.append(
                {
                    "apiGroups": [group],
                    "resources": sorted(resources),
                    "verbs": sorted(verb_set),
                }
            )
    if backfill and backfill_since_webhook:
        rules.append(
            {
                "apiGroups": ["admissionregistration.k8s.io"],
                "resources": ["mutatingwebhookconfigurations"],
                "resourceNames": [backfill_since_webhook],
                "verbs": ["get"],
            }
        )
    return rules


def _list_verbs(kind: ApiVersioned) -> set[str]:
    """`list`, and `watch` on a custom resource: the sweeper reads one as a streaming list (a
    watch that begins with its objects, closed once they are all in; `kube.listing`)."""
    return {"list", "watch"} if kind.custom else {"list"}


def webhook_parent_rules(policy: Policy) -> list[dict[str, Any]]:
    """ClusterRole rules for owner inheritance: `get`, `list`, `watch` on the governed kinds
    that can be parents (never Secrets), one rule per API group, then one per parent-only kind
    of the registry (Katib Trials)."""
    verbs = ["get", "list", "watch"]
    by_group: dict[str, set[str]] = defaultdict(set)
    for kind in policy.kinds:
        if kind.parent:
            by_group[kind.group].add(kind.resource)
    rules = [
        {"apiGroups": [group], "resources": sorted(resources), "verbs": verbs}
        for group, resources in sorted(by_group.items())
    ]
    rules += [
        {"apiGroups": [kind.group], "resources": [kind.resource], "verbs": verbs}
        for kind in PARENT_ONLY_KINDS
    ]
    return rules


def webhook_provenance_rules() -> list[dict[str, Any]]:
    """ClusterRole rules the admission server needs for provenance, and nothing more: `get`
    (by name, never a list) on the creator Pod, the StatefulSet that controls it (the notebook's
    name) and the namespace's Kubeflow Profile (its owner)."""
    return [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get"]},
        {"apiGroups": ["kubeflow.org"], "resources": ["profiles"], "verbs": ["get"]},
    ]


def sweeper_lease_rules(lease_name: str) -> list[dict[str, Any]]:
    """Role rules (in the Lease's namespace) for leader election.

    `create` cannot be limited by resourceNames (the name is not known to RBAC before the
    object exists), so it is granted on leases in general; get and update only on ours.
    """
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease_name],
            "verbs": ["get", "update"],
        },
    ]
