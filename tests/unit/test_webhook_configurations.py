"""The generated webhook configurations: what the API server will send us, and what not."""

import base64

import pytest
import yaml

from kaptain_warden.cli import main
from kaptain_warden.install.webhook_configurations import WebhookClient, webhook_configurations
from kaptain_warden.policies.loader import load_policy

POLICY = load_policy()


def generate(**kw):
    kw.setdefault("client", WebhookClient(url="https://127.0.0.1:9443"))
    kw.setdefault("ca_bundle", b"PEM")
    return webhook_configurations(policy=POLICY, **kw)


def test_both_configurations_have_the_required_settings():
    mutating, validating = generate()
    for config in (mutating, validating):
        (hook,) = config["webhooks"]
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["sideEffects"] == "None"
        assert hook["matchPolicy"] == "Equivalent"
        assert hook["failurePolicy"] == "Ignore"
        assert hook["timeoutSeconds"] == 5
        assert base64.b64decode(hook["clientConfig"]["caBundle"]) == b"PEM"
    assert mutating["webhooks"][0]["reinvocationPolicy"] == "IfNeeded"
    assert "reinvocationPolicy" not in validating["webhooks"][0]
    assert mutating["webhooks"][0]["clientConfig"]["url"] == "https://127.0.0.1:9443/mutate"
    assert validating["webhooks"][0]["clientConfig"]["url"] == "https://127.0.0.1:9443/validate"


def registered(hook: dict) -> set[tuple[str, str, str]]:
    return {
        (group, version, resource)
        for rule in hook["rules"]
        for group in rule["apiGroups"]
        for version in rule["apiVersions"]
        for resource in rule["resources"]
    }


def test_rules_cover_every_governed_kind_and_only_status_that_can_change_metadata():
    mutating, validating = generate()
    expected = {(k.group, k.version, k.resource) for k in POLICY.kinds}
    # Built-in Jobs' status updates can rewrite labels and annotations; CRDs' cannot.
    assert registered(validating["webhooks"][0]) == expected | {("batch", "v1", "jobs/status")}
    assert registered(mutating["webhooks"][0]) == expected
    assert ("", "v1", "secrets") in expected
    assert ("serving.knative.dev", "v1", "revisions") in expected
    assert all(r["operations"] == ["CREATE", "UPDATE"] for r in mutating["webhooks"][0]["rules"])
    assert all(r["operations"] == ["CREATE", "UPDATE"] for r in validating["webhooks"][0]["rules"])


def test_namespace_selector_keeps_out_kube_system_and_the_warden_namespace():
    mutating, _ = generate()
    (expression,) = mutating["webhooks"][0]["namespaceSelector"]["matchExpressions"]
    assert expression["key"] == "kubernetes.io/metadata.name"
    assert expression["operator"] == "NotIn"
    assert {"kube-system", "kaptain-warden"} <= set(expression["values"])


def test_service_client_and_settings():
    mutating, _ = generate(
        client=WebhookClient(service_namespace="kw", service_name="kw-webhook", service_port=8443),
        failure_policy="Fail",
        timeout_seconds=3,
    )
    hook = mutating["webhooks"][0]
    assert hook["clientConfig"]["service"] == {
        "namespace": "kw",
        "name": "kw-webhook",
        "path": "/mutate",
        "port": 8443,
    }
    assert hook["failurePolicy"] == "Fail"
    assert hook["timeoutSeconds"] == 3


@pytest.mark.parametrize("timeout", [0, 31])
def test_timeout_out_of_range_is_refused(timeout):
    with pytest.raises(ValueError, match="between 1 and 30"):
        generate(timeout_seconds=timeout)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"url": "http://insecure"},
        {"url": "https://x", "service_name": "s", "service_namespace": "n"},
        {"service_name": "s"},
    ],
)
def test_bad_clients_are_refused(kwargs):
    with pytest.raises(ValueError):
        WebhookClient(**kwargs)


def test_cli_prints_two_yaml_documents(capsys, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"CA")
    assert main(["webhook-config", "--service", "kw/kw-webhook", "--ca-bundle-file", str(ca)]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ]
    assert main(["webhook-config", "--service", "no-slash"]) == 2
    assert "--service takes NAMESPACE/NAME" in capsys.readouterr().err
