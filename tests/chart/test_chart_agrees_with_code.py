"""Tier 4: what the chart renders is what the Python code generates for the same policy."""

from __future__ import annotations

import base64
import copy
import functools
from importlib import resources
from typing import Any

import pytest
import yaml

from helm_chart import CHART, CI_VALUES, find, find_all, render
from kaptain_warden.install.rbac import (
    sweeper_cluster_rules,
    sweeper_lease_rules,
    webhook_parent_rules,
    webhook_provenance_rules,
)
from kaptain_warden.install.webhook_configurations import WebhookClient, webhook_configurations
from kaptain_warden.policies.loader import load_policy, load_policy_text
from kaptain_warden.policies.model import Policy

RELEASE, NAMESPACE = "kw", "warden-system"
FULLNAME = "kw-kaptain-warden"
BUILT_IN = yaml.safe_load(
    resources.files("kaptain_warden.policies").joinpath("default-policy.yaml").read_text()
)

# A policy governing a kind outside the table (with `resource:`) and a namespace selector.
CUSTOM_POLICY_VALUES = {
    "policy.rules[0].id": "configmaps",
    "policy.rules[0].match.kinds[0].apiVersion": "v1",
    "policy.rules[0].match.kinds[0].kind": "ConfigMap",
    "policy.rules[0].match.kinds[0].resource": "configmaps",
    "policy.rules[0].match.namespaceSelector.matchLabels.team": "a",
    "policy.rules[0].ttl": "2h",
    "policy.rules[1].id": "revisions",
    "policy.rules[1].match.kinds[0].apiVersion": "serving.knative.dev/v1",
    "policy.rules[1].match.kinds[0].kind": "Revision",
    "policy.settings.excludedNamespaces[0]": "istio-system",
}

CASES: dict[str, dict[str, Any]] = {
    "default": {},
    "cert-manager": {"values": [CI_VALUES["cert-manager"]]},
    "ha": {"values": [CI_VALUES["ha"]]},
    "provided": {
        "set_values": {
            "tls.mode": "provided",
            "tls.provided.secretName": "my-tls",
            "tls.provided.caBundle": base64.b64encode(
                b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
            ).decode(),
        }
    },
    "custom-policy": {"set_values": CUSTOM_POLICY_VALUES},
    "no-backfill": {"set_values": {"sweeper.backfill": "false"}},
    "backfill-existing": {"set_values": {"sweeper.backfillExisting": "true"}},
}


@functools.cache
def _rendered(case: str) -> list[dict[str, Any]]:
    return render(release=RELEASE, namespace=NAMESPACE, **CASES[case])


def rendered(case: str) -> list[dict[str, Any]]:
    """The manifests of one case (rendered once; a copy each time, tests may change it)."""
    return copy.deepcopy(_rendered(case))


def policy_of(manifests: list[dict[str, Any]]) -> Policy:
    config_map = find(manifests, "ConfigMap", f"{FULLNAME}-policy")
    return load_policy_text(config_map["data"]["policy.yaml"], source="rendered ConfigMap")


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, rendered(request.param)


def test_chart_webhooks_equal_the_generators(case):
    name, manifests = case
    policy = policy_of(manifests)
    mutating = find(manifests, "MutatingWebhookConfiguration")
    validating = find(manifests, "ValidatingWebhookConfiguration")
    webhook = mutating["webhooks"][0]
    assert webhook["timeoutSeconds"] == (3 if name == "ha" else 5)
    expected = webhook_configurations(
        policy=policy,
        client=WebhookClient(
            service_namespace=NAMESPACE, service_name=f"{FULLNAME}-webhook", service_port=443
        ),
        # The chart leaves caBundle to the certs bootstrap or cert-manager's cainjector, except
        # when it is provided; compare it separately below.
        ca_bundle=b"",
        name=FULLNAME,
        failure_policy=webhook["failurePolicy"],
        timeout_seconds=webhook["timeoutSeconds"],
    )
    provided = CASES[name].get("set_values", {}).get("tls.provided.caBundle")
    for chart_config, generated in zip((mutating, validating), expected, strict=True):
        assert chart_config["kind"] == generated["kind"]
        assert chart_config["metadata"]["name"] == generated["metadata"]["name"]
        chart_hooks = chart_config["webhooks"]
        for hook in chart_hooks:
            bundle = hook["clientConfig"].pop("caBundle", None)
            assert bundle == provided
        assert chart_hooks == generated["webhooks"]


def test_the_ha_set_fails_closed_and_the_default_is_open():
    assert (
        find(rendered("ha"), "MutatingWebhookConfiguration")["webhooks"][0]["failurePolicy"]
        == "Fail"
    )
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        assert find(rendered("default"), kind)["webhooks"][0]["failurePolicy"] == "Ignore"


def test_the_policy_configmap_is_the_default_policy_with_the_release_names_filled_in():
    policy = policy_of(rendered("default"))
    default = load_policy()
    assert policy.rules == default.rules
    settings = policy.settings
    assert settings.warden_namespace == NAMESPACE
    assert settings.excluded_namespaces == default.settings.excluded_namespaces
    assert settings.dry_run is False and settings.backfill is True
    assert policy.is_privileged(f"system:serviceaccount:{NAMESPACE}:{FULLNAME}-sweeper", ())
    assert not policy.is_privileged(f"system:serviceaccount:{NAMESPACE}:{FULLNAME}-webhook", ())


def test_the_charts_default_rules_are_the_built_in_policys_rules():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["policy"]["rules"] == BUILT_IN["rules"]
    settings = values["policy"]["settings"]
    filled = {"wardenNamespace", "dryRun", "backfill"}  # from the release and sweeper.*
    assert set(settings) == set(BUILT_IN["settings"]) - filled
    for key, value in settings.items():
        if key != "privileged":
            assert BUILT_IN["settings"][key] == value, key
    # The built-in policy's own ServiceAccount is the chart's to add, under the release's names.
    privileged = BUILT_IN["settings"]["privileged"]
    assert settings["privileged"] == {"users": [], "groups": privileged["groups"]}
    assert privileged["users"] == ["system:serviceaccount:kaptain-warden:kaptain-warden-sweeper"]


def sweeper_args(manifests: list[dict[str, Any]]) -> list[str]:
    deployment = find(manifests, "Deployment", f"{FULLNAME}-sweeper")
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_dry_run_is_one_value_away_and_backfill_of_what_the_webhook_missed_is_on():
    manifests = render(
        release=RELEASE,
        namespace=NAMESPACE,
        set_values={"sweeper.dryRun": "true", "sweeper.backfill": "false"},
    )
    policy = policy_of(manifests)
    assert policy.settings.dry_run and not policy.settings.backfill
    assert "--dry-run" in sweeper_args(manifests)
    assert not any(a.startswith("--backfill") for a in sweeper_args(manifests))
    default_args = sweeper_args(rendered("default"))
    assert "--dry-run" not in default_args
    # By default: backfill, of the objects made since the webhook configuration was.
    assert "--backfill" in default_args
    assert f"--backfill-since-webhook={FULLNAME}" in default_args
    existing = sweeper_args(rendered("backfill-existing"))
    assert "--backfill" in existing
    assert not any(a.startswith("--backfill-since-webhook") for a in existing)


def test_sweeper_cluster_role_equals_the_generated_rules(case):
    _, manifests = case
    policy = policy_of(manifests)
    role = find(manifests, "ClusterRole", f"{FULLNAME}-sweeper")
    since = [
        a.split("=", 1)[1]
        for a in sweeper_args(manifests)
        if a.startswith("--backfill-since-webhook=")
    ]
    assert role["rules"] == sweeper_cluster_rules(
        policy, backfill=policy.settings.backfill, backfill_since_webhook=(since or [None])[0]
    )


def test_sweeper_lease_role_equals_the_generated_rules():
    role = find(rendered("default"), "Role", f"{FULLNAME}-sweeper")
    assert role["rules"] == sweeper_lease_rules(f"{FULLNAME}-sweeper")
    args = find(rendered("default"), "Deployment", f"{FULLNAME}-sweeper")["spec"]["template"][
        "spec"
    ]["containers"][0]["args"]
    assert f"--lease-name={FULLNAME}-sweeper" in args
    assert f"--lease-namespace={NAMESPACE}" in args


def expected_webhook_read_rules(policy: Policy) -> list[dict[str, Any]]:
    """Parents (governed kinds but Secrets, then Katib Trials), namespaces, provenance."""
    namespaces = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}
    return [*webhook_parent_rules(policy), namespaces, *webhook_provenance_rules()]


def test_webhook_cluster_role_reads_parents_and_patches_only_its_own_configurations(case):
    name, manifests = case
    role = find(manifests, "ClusterRole", f"{FULLNAME}-webhook")
    expected = expected_webhook_read_rules(policy_of(manifests))
    mode = "selfManaged"
    if name == "cert-manager":
        mode = "certManager"
    elif name == "provided":
        mode = "provided"
    if mode == "selfManaged":
        expected.append(
            {
                "apiGroups": ["admissionregistration.k8s.io"],
                "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
                "resourceNames": [FULLNAME],
                "verbs": ["get", "patch"],
            }
        )
    assert role["rules"] == expected
    for rule in role["rules"]:
        assert "delete" not in rule["verbs"] and "deletecollection" not in rule["verbs"]
    roles = [m for m in find_all(manifests, "Role") if m["metadata"]["name"].endswith("-webhook")]
    if mode == "selfManaged":
        (secret_role,) = roles
        assert secret_role["rules"] == [
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": [f"{FULLNAME}-webhook-tls"],
                "verbs": ["get", "update"],
            }
        ]
    else:
        assert roles == []


def test_the_certs_bootstrap_is_pointed_at_the_charts_own_objects():
    manifests = rendered("default")
    pod = find(manifests, "Deployment", f"{FULLNAME}-webhook")["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    sidecar = next(c for c in pod["containers"] if c["name"] == "certs-watch")
    for container in (init, sidecar):
        args = container["args"]
        assert f"--secret={FULLNAME}-webhook-tls" in args
        assert f"--service={FULLNAME}-webhook" in args
        assert f"--mutating-webhook={FULLNAME}" in args
        assert f"--validating-webhook={FULLNAME}" in args
    find(manifests, "Secret", f"{FULLNAME}-webhook-tls")
    find(manifests, "Service", f"{FULLNAME}-webhook")
