"""Tier 1: the sweeper's RBAC rules follow the policy and grant nothing more."""

from __future__ import annotations

from kaptain_warden.install.rbac import sweeper_cluster_rules, sweeper_lease_rules
from kaptain_warden.policies.loader import load_policy, load_policy_text


def verbs(rules, group, resource):
    found = set()
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            found |= set(rule["verbs"])
    return found


def test_the_default_policy_needs_list_delete_and_patch_on_governed_kinds():
    # patch: every default rule warns before expiry, which writes warned-at.
    rules = sweeper_cluster_rules(load_policy())
    assert verbs(rules, "", "secrets") == {"list", "delete", "patch"}
    assert verbs(rules, "batch", "jobs") == {"list", "delete", "patch"}
    # Custom resources are read as streaming lists, which are watches.
    assert verbs(rules, "serving.knative.dev", "revisions") == {"list", "watch", "delete", "patch"}
    assert verbs(rules, "serving.knative.dev", "configurations") == {
        "get",
        "list",
        "watch",
        "delete",
        "patch",
    }
    assert verbs(rules, "serving.kserve.io", "inferenceservices") == {
        "get",
        "list",
        "watch",
        "delete",
        "patch",
    }
    assert verbs(rules, "sparkoperator.k8s.io", "sparkapplications") == {
        "list",
        "watch",
        "delete",
        "patch",
    }
    assert verbs(rules, "", "pods") == {"list"}
    assert verbs(rules, "", "serviceaccounts") == {"list"}
    assert verbs(rules, "apps", "deployments") == {"list"}
    assert verbs(rules, "events.k8s.io", "events") == {"create"}
    # Nothing writes or reads anything else; no wildcards; no watch on Kubernetes' own kinds.
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert not {"update", "deletecollection", "escalate"} & set(rule["verbs"])
        custom = all("." in g for g in rule["apiGroups"])
        assert "watch" not in rule["verbs"] or custom, rule
    assert verbs(rules, "", "secrets") & {"get", "update"} == set()


def test_backfill_adds_patch_on_governed_kinds_and_get_on_all_but_secrets():
    rules = sweeper_cluster_rules(load_policy(), backfill=True)
    assert verbs(rules, "", "secrets") == {"list", "delete", "patch"}  # never their data
    assert verbs(rules, "batch", "jobs") == {"get", "list", "delete", "patch"}
    assert verbs(rules, "", "pods") == {"list"}
    # Attribution reads the namespace's owner and its Kubeflow Profile's; nothing more.
    assert verbs(rules, "", "namespaces") == {"get"}
    assert verbs(rules, "kubeflow.org", "profiles") == {"get"}
    assert not any("resourceNames" in r for r in rules)


def test_backfill_since_the_webhook_reads_that_one_configuration():
    rules = sweeper_cluster_rules(load_policy(), backfill=True, backfill_since_webhook="kw")
    assert rules[-1] == {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["mutatingwebhookconfigurations"],
        "resourceNames": ["kw"],
        "verbs": ["get"],
    }
    assert sweeper_cluster_rules(load_policy(), backfill_since_webhook="kw") == (
        sweeper_cluster_rules(load_policy())
    )


def test_a_policy_without_secrets_or_revisions_needs_no_pod_or_configuration_reads():
    policy = load_policy_text(
        """
apiVersion: warden.kaptain.io/v1alpha1
kind: WardenPolicy
rules:
  - id: jobs
    match: {kinds: [{apiVersion: batch/v1, kind: Job}]}
    ttlAfterFinished: 1h
    warnBefore: "0"
"""
    )
    rules = sweeper_cluster_rules(policy)
    assert rules == [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["delete", "list"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
    ]


def test_patch_only_on_the_kinds_of_rules_that_warn():
    policy = load_policy_text(
        """
apiVersion: warden.kaptain.io/v1alpha1
kind: WardenPolicy
rules:
  - id: jobs
    match: {kinds: [{apiVersion: batch/v1, kind: Job}]}
    ttlAfterFinished: 1h
    warnBefore: "0"
  - id: secrets
    match: {kinds: [{apiVersion: v1, kind: Secret}]}
    ttl: 1d
"""
    )
    rules = sweeper_cluster_rules(policy)
    assert verbs(rules, "batch", "jobs") == {"list", "delete"}
    assert verbs(rules, "", "secrets") == {"list", "delete", "patch"}


def test_lease_rules_name_the_lease_where_rbac_can():
    rules = sweeper_lease_rules("my-lease")
    assert {"create"} == set(rules[0]["verbs"]) and "resourceNames" not in rules[0]
    assert rules[1]["resourceNames"] == ["my-lease"]
    assert set(rules[1]["verbs"]) == {"get", "update"}
