"""The sweeper's least-privilege RBAC rules, generated from the policy for tests and chart."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from kaptain_warden.policies.metadata import KUBEFLOW_PROFILE_GROUP, KUBEFLOW_PROFILE_RESOURCE
from kaptain_warden.policies.model import Policy
from kaptain_warden.policies.secret_refs import HOLDER_KINDS

__all__ = ["sweeper_cluster_rules", "sweeper_lease_rules", "webhook_provenance_rules"]

_KNATIVE = "serving.knative.dev"
_ISVC_GROUPS = ("serving.kserve.io", "serving.kubeflow.org")


def sweeper_cluster_rules(
    policy: Policy, *, backfill: bool = False, backfill_since_webhook: str | None = None
) -> list[dict[str, Any]]:
    """ClusterRole rules that let the sweeper do everything it does under `policy`, no more.

    - governed kinds: `list` (label-selected, paginated) and `delete`; `patch` and `get`
      only with backfill (it stamps objects, and reads parents for their owner), never `get`
      on Secrets; `patch` on the kinds of rules that warn before expiry (`warnBefore` not
      `0`: it writes `warned-at`) and of rules with `expireWhenCreatorGone` (it writes
      `creator-gone-at`), and then `list` on pods (metadata only: is the creator there?);
    - Knative Revisions governed: `get` on Configurations and both InferenceService groups
      (latest ready revision, status components);
    - Secrets governed: `list` on the kinds that can hold a Secret (pods, ServiceAccounts,
      workloads with pod templates), read before a Secret is deleted;
    - `create` on events.k8s.io Events, one per deletion;
    - backfill: `get` on namespaces (labels, the `owner` annotation) and on Kubeflow
      Profiles (their owner); with `backfill_since_webhook`, `get` on that one
      MutatingWebhookConfiguration (when the webhook was registered).

    Rules are grouped per API group, sorted, so the output is stable for the chart's tests.
    """
    verbs: dict[tuple[str, str], set[str]] = defaultdict(set)
    kinds = policy.kinds
    for kind in kinds:
        verbs[(kind.group, kind.resource)] |= {"list", "delete"}
        if backfill:
            # Parents are read for their owner; a Secret is never one, and its data is not
            # the sweeper's to read (backfill lists and patches it as metadata only).
            secret = kind.group == "" and kind.kind == "Secret"
            verbs[(kind.group, kind.resource)] |= {"patch"} if secret else {"get", "patch"}
    for rule in policy.rules:
        if rule.warn_before is None or rule.warn_before > timedelta(0):
            for kind in rule.match.kinds:
                verbs[(kind.group, kind.resource)].add("patch")
        if rule.expire_when_creator_gone is not None:
            for kind in rule.match.kinds:
                verbs[(kind.group, kind.resource)].add("patch")
            verbs[("", "pods")].add("list")
    if any(k.group == _KNATIVE and k.kind == "Revision" for k in kinds):
        verbs[(_KNATIVE, "configurations")].add("get")
        for group in _ISVC_GROUPS:
            verbs[(group, "inferenceservices")].add("get")
    if any(k.group == "" and k.kind == "Secret" for k in kinds):
        for holder in HOLDER_KINDS:
            verbs[(holder.group, holder.resource)].add("list")
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
