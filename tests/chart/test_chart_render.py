"""Tier 4: helm lint, what the chart renders for each value set, and what it refuses."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import pytest
import yaml

from helm_chart import (
    CHART,
    CI_VALUES,
    find,
    find_all,
    pod_specs,
    render,
    run_helm,
    template_args,
)
from kaptain_warden.cli import build_parser

FULLNAME = "kaptain-warden"  # release "kaptain-warden": the chart name is not repeated


@pytest.mark.parametrize("value_set", sorted(CI_VALUES))
def test_helm_lint_strict_passes(value_set):
    result = run_helm("lint", "--strict", str(CHART), "--values", str(CI_VALUES[value_set]))
    assert "0 chart(s) failed" in result.stdout


def test_helm_template_needs_no_flags():
    """`helm template charts/kaptain-warden` alone renders (the issue's definition of done)."""
    result = run_helm("template", str(CHART))
    kinds = {doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc}
    assert {"Deployment", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} <= kinds


@pytest.fixture(scope="module", params=sorted(CI_VALUES))
def manifests(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(values=[CI_VALUES[request.param]])


def test_every_pod_is_hardened(manifests):
    specs = pod_specs(manifests)
    assert {"Deployment/kaptain-warden-webhook", "Deployment/kaptain-warden-sweeper"} <= set(specs)
    dockerfile_uid = 10001
    for name, spec in specs.items():
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security["runAsUser"] == dockerfile_uid, name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{name} {container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["runAsNonRoot"] is True, where
            resources_ = container["resources"]
            assert {"cpu", "memory"} <= set(resources_["requests"]), where
            assert {"cpu", "memory"} <= set(resources_["limits"]), where
            assert container["args"][0] in ("serve", "sweeper", "certs"), where


def test_webhook_pods_probe_drain_and_spread(manifests):
    deployment = find(manifests, "Deployment", f"{FULLNAME}-webhook")
    spec = deployment["spec"]["template"]["spec"]
    server = next(c for c in spec["containers"] if c["name"] == "webhook")
    assert server["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "https",
        "scheme": "HTTPS",
    }
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    sleep = int(server["lifecycle"]["preStop"]["exec"]["command"][1])
    graceful = int(
        next(a for a in server["args"] if a.startswith("--graceful-timeout=")).split("=")[1]
    )
    assert sleep > 0
    assert spec["terminationGracePeriodSeconds"] > sleep + graceful
    body_timeout = next(a for a in server["args"] if a.startswith("--body-timeout="))
    webhooks = find(manifests, "ValidatingWebhookConfiguration")["webhooks"]
    assert {f"--body-timeout={w['timeoutSeconds']}" for w in webhooks} == {body_timeout}
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    replicas = deployment["spec"]["replicas"]
    assert replicas >= 2
    pdb = find(manifests, "PodDisruptionBudget")
    assert 0 < pdb["spec"]["minAvailable"] < replicas
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_sweeper_elects_a_leader_and_is_probed(manifests):
    spec = find(manifests, "Deployment", f"{FULLNAME}-sweeper")["spec"]["template"]["spec"]
    (sweeper,) = spec["containers"]
    assert "--leader-election" in sweeper["args"]
    assert sweeper["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_self_managed_tls_runs_bootstrap_then_a_watching_sidecar():
    manifests = render()
    spec = find(manifests, "Deployment", f"{FULLNAME}-webhook")["spec"]["template"]["spec"]
    assert [c["args"][:2] for c in spec["initContainers"]] == [["certs", "bootstrap"]]
    watch = next(c for c in spec["containers"] if c["name"] == "certs-watch")
    assert watch["args"][:2] == ["certs", "watch"]
    assert watch["readinessProbe"]["httpGet"]["path"] == "/readyz"
    tls = next(v for v in spec["volumes"] if v["name"] == "tls")
    assert tls["emptyDir"]["medium"] == "Memory"
    secret = find(manifests, "Secret", f"{FULLNAME}-webhook-tls")
    assert "data" not in secret  # filled by the bootstrap, left alone by upgrades


def test_cert_manager_tls_uses_a_certificate_and_the_cainjector():
    manifests = render(values=[CI_VALUES["cert-manager"]])
    certificate = find(manifests, "Certificate", f"{FULLNAME}-webhook")
    service = f"{FULLNAME}-webhook"
    assert f"{service}.kaptain-warden.svc" in certificate["spec"]["dnsNames"]
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        annotations = find(manifests, kind)["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == f"kaptain-warden/{service}"
    spec = find(manifests, "Deployment", service)["spec"]["template"]["spec"]
    assert "initContainers" not in spec
    assert [c["name"] for c in spec["containers"]] == ["webhook"]
    tls = next(v for v in spec["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == certificate["spec"]["secretName"]
    issuers = {m["metadata"]["name"]: m["spec"] for m in find_all(manifests, "Issuer")}
    assert issuers[f"{service}-selfsigned"] == {"selfSigned": {}}
    assert certificate["spec"]["issuerRef"]["name"] == f"{service}-ca"
    # No self-managed pieces: no Secret shell, no RBAC on Secrets or webhook configurations.
    assert not [m for m in find_all(manifests, "Secret")]
    assert not [m for m in find_all(manifests, "Role") if m["metadata"]["name"] == service]


def test_cert_manager_with_an_existing_issuer_creates_no_issuer():
    manifests = render(
        values=[CI_VALUES["cert-manager"]],
        set_values={
            "tls.certManager.issuerRef.name": "corp-ca",
            "tls.certManager.issuerRef.kind": "ClusterIssuer",
        },
    )
    assert find_all(manifests, "Issuer") == []
    (certificate,) = find_all(manifests, "Certificate")
    assert certificate["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }


def test_network_policies_are_on_by_default_and_servicemonitors_off():
    default = render()
    assert "ServiceMonitor" not in {m["kind"] for m in default}
    assert len(find_all(default, "NetworkPolicy")) == 2
    ha = render(values=[CI_VALUES["ha"]])
    assert len(find_all(ha, "NetworkPolicy")) == 2
    assert len(find_all(ha, "ServiceMonitor")) == 2
    webhook_policy = find(ha, "NetworkPolicy", f"{FULLNAME}-webhook")
    assert webhook_policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress_ports = {
        (p["port"], p["protocol"])
        for rule in webhook_policy["spec"]["egress"]
        for p in rule["ports"]
    }
    assert {(53, "UDP"), (443, "TCP"), (6443, "TCP")} <= egress_ports


def ingress_ports(policy: dict) -> dict[str, list]:
    """port -> the `from` of the rule that opens it (a rule without `from` admits everyone)."""
    opened = {}
    for rule in policy["spec"].get("ingress") or []:
        assert rule.get("from"), f"a rule open to every source: {rule}"
        for port in rule["ports"]:
            opened[port["port"]] = rule["from"]
    return opened


def test_by_default_only_the_webhook_port_is_open_and_only_what_values_name():
    default = render()
    webhook = ingress_ports(find(default, "NetworkPolicy", f"{FULLNAME}-webhook"))
    assert list(webhook) == ["https"]  # the API server's address is not selectable
    assert webhook["https"] == [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]
    assert ingress_ports(find(default, "NetworkPolicy", f"{FULLNAME}-sweeper")) == {}


def test_an_empty_from_list_means_no_source_not_every_source():
    """`webhookFrom: []` used to render a rule without `from`, which admits every source."""
    closed = render(
        set_values={"networkPolicy.webhookFrom": "null", "networkPolicy.metricsFrom": "null"}
    )
    for component in ("webhook", "sweeper"):
        policy = find(closed, "NetworkPolicy", f"{FULLNAME}-{component}")
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert ingress_ports(policy) == {}
    ha = render(values=[CI_VALUES["ha"]])
    sweeper = ingress_ports(find(ha, "NetworkPolicy", f"{FULLNAME}-sweeper"))
    assert sweeper["metrics"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }


def test_the_pre_delete_hook_removes_only_the_webhook_configurations():
    manifests = render()
    job = find(manifests, "Job", f"{FULLNAME}-cleanup")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [
        "certs",
        "unregister",
        f"--mutating-webhook={FULLNAME}",
        f"--validating-webhook={FULLNAME}",
    ]
    role = find(manifests, "ClusterRole", f"{FULLNAME}-cleanup")
    assert role["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
            "resourceNames": [FULLNAME],
            "verbs": ["delete"],
        }
    ]
    assert (
        role["metadata"]["annotations"]["helm.sh/hook-weight"]
        < job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )


def rejected(*set_args: str) -> str:
    """helm's error for values the chart must refuse."""
    args = ["template", "kw", str(CHART)]
    for value in set_args:
        args += ["--set", value]
    result = run_helm(*args, check=False)
    assert result.returncode != 0, f"accepted: {set_args}"
    return result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["webhook.replica=3"], "at '/webhook': additional properties 'replica' not allowed"),
        (["webhook.failurePolicy=Never"], "at '/webhook/failurePolicy'"),
        (["webhook.timeoutSeconds=45"], "maximum: got 45, want 30"),
        (["tls.mode=vault"], "at '/tls/mode'"),
        (["sweeper.dryrun=true"], "additional properties 'dryrun' not allowed"),
        (["podSecurityContext.runAsUser=0"], "at '/podSecurityContext/runAsUser'"),
        (["image.digest=latest"], "at '/image/digest'"),
        (["policy.settings.wardenNamespace=elsewhere"], "'wardenNamespace' not allowed"),
        (
            [
                "policy.rules[0].id=Secrets",
                "policy.rules[0].match.kinds[0].kind=Secret",
                "policy.rules[0].match.kinds[0].apiVersion=v1",
            ],
            "at '/policy/rules/0/id'",
        ),
        (["policy.settings.propagationPolicy=Later"], "at '/policy/settings/propagationPolicy'"),
    ],
)
def test_bad_values_are_rejected_by_the_schema_with_the_path(values, message):
    assert message in rejected(*values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["webhook.podDisruptionBudget.minAvailable=2"], "must be below webhook.replicas (2)"),
        (["webhook.preStopSleepSeconds=20"], "must exceed webhook.preStopSleepSeconds"),
        (
            ["sweeper.replicas=2", "sweeper.leaderElection.enabled=false"],
            "needs sweeper.leaderElection",
        ),
        (["tls.mode=provided"], "needs tls.provided.secretName"),
        (["tls.mode=provided", "tls.provided.secretName=mine"], "needs tls.provided.caBundle"),
        (
            ["tls.selfManaged.replicaGraceSeconds=30"],
            "replicaGraceSeconds must exceed staleAfterSeconds",
        ),
        (["tls.selfManaged.certRenewBeforeDays=90"], "certRenewBeforeDays must be below"),
        (
            [
                "policy.rules[0].id=maps",
                "policy.rules[0].match.kinds[0].apiVersion=v1",
                "policy.rules[0].match.kinds[0].kind=ConfigMap",
            ],
            'policy.rules[0] (id "maps"): v1 ConfigMap is not a kind kaptain-warden knows',
        ),
    ],
)
def test_contradictory_values_fail_with_what_to_change(values, message):
    assert message in rejected(*values)


def test_the_values_schema_embeds_the_policy_schema():
    chart_schema = json.loads((CHART / "values.schema.json").read_text())
    policy_schema = json.loads(
        resources.files("kaptain_warden.policies").joinpath("schema.json").read_text()
    )
    for name, definition in policy_schema["$defs"].items():
        if name == "settings":
            continue
        assert chart_schema["$defs"][name] == definition, name
    settings = policy_schema["$defs"]["settings"]
    chart_settings = chart_schema["$defs"]["policySettings"]
    # The chart fills in these three from the release namespace and sweeper.*.
    filled = {"wardenNamespace", "dryRun", "backfill"}
    assert set(chart_settings["properties"]) == set(settings["properties"]) - filled
    # Without the policy's defaults (for a setting a policy file leaves out): the chart's
    # defaults are values.yaml's.
    for key, definition in chart_settings["properties"].items():
        wanted = {k: v for k, v in settings["properties"][key].items() if k != "default"}
        if "properties" in wanted:
            wanted["properties"] = {
                name: {k: v for k, v in child.items() if k != "default"}
                for name, child in wanted["properties"].items()
            }
        assert wanted == definition, key


def objects_without_additional_properties_false(node: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(node, dict):
        if "properties" in node and node.get("additionalProperties") is not False:
            found.append(path or "/")
        for key, value in node.items():
            found += objects_without_additional_properties_false(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += objects_without_additional_properties_false(value, f"{path}/{i}")
    return found


def test_every_object_in_the_values_schema_refuses_unknown_keys():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert objects_without_additional_properties_false(schema) == []


_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w.-]*):(?P<rest>.*)$")


def _has_doc_comment(lines: list[str], number: int) -> bool:
    """Whether the comment block right above line `number` has a `# --` line."""
    above = number - 1
    while above >= 0 and lines[above].lstrip().startswith("#"):
        if lines[above].lstrip().startswith("# --"):
            return True
        above -= 1
    return False


def values_keys(text: str) -> list[tuple[str, bool]]:
    """(dotted key, has a `# --` comment) for each key of values.yaml that needs one: keys
    under a documented key or inside a list are covered by it (helm-docs' convention), and a
    mapping made only of documented keys needs none."""
    lines = text.splitlines()
    keys: list[tuple[str, bool]] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented or a list)
    for number, line in enumerate(lines):
        match = _KEY.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if any(covered for _, _, covered in stack):
            continue
        path = ".".join([key for _, key, _ in stack] + [match["key"]])
        documented = _has_doc_comment(lines, number)
        is_parent = not match["rest"].strip()
        following = next((later for later in lines[number + 1 :] if later.strip()), "")
        is_list = is_parent and following.lstrip().startswith("-")
        stack.append((indent, match["key"], documented or is_list))
        if documented or not (is_parent and not is_list):
            keys.append((path, documented))
    return keys


def undocumented_keys(text: str) -> list[str]:
    """Keys of values.yaml with no `# --` comment above them or above a parent."""
    return [path for path, documented in values_keys(text) if not documented]


def test_values_yaml_documents_every_key():
    text = (CHART / "values.yaml").read_text()
    assert undocumented_keys(text) == []
    assert undocumented_keys("a:\n  # -- yes\n  b: 1\n  c: 2\n") == ["a.c"]
    assert undocumented_keys("# -- all of it\na:\n  b: 1\nd: []\n") == ["d"]


def test_template_args_render_the_same_as_the_cli():
    """The helper used by every test is plain `helm template` (no hidden flags)."""
    args = template_args(release="r", namespace="n")
    assert args == ["template", "r", str(CHART), "--namespace", "n"]


def test_the_charts_readme_lists_every_value():
    text = (CHART / "values.yaml").read_text()
    install = (CHART / "README.md").read_text()
    missing = [path for path, _ in values_keys(text) if f"| `{path}` |" not in install]
    assert missing == []


@pytest.mark.parametrize("value_set", sorted(CI_VALUES))
def test_every_container_command_line_is_one_kaptain_warden_accepts(value_set, capsys):
    """The chart's flags exist, with values of the right type (argparse exits 2 otherwise)."""
    parser = build_parser()
    for name, spec in pod_specs(render(values=[CI_VALUES[value_set]])).items():
        for container in spec.get("initContainers", []) + spec["containers"]:
            try:
                parsed = parser.parse_args(container["args"])
            except SystemExit:
                pytest.fail(f"{name} {container['name']}: {capsys.readouterr().err}")
            assert callable(parsed.run)


def test_kube_version_constraint_is_the_oldest_tested_version():
    """Chart.yaml's kubeVersion admits the oldest version `make test` runs tier 3 on, and
    refuses the minor before it, with helm's own message."""
    makefile = (CHART.parents[1] / "Makefile").read_text()
    oldest = re.search(r"^K8S_OLDEST := (\d+)\.(\d+)\.\d+$", makefile, re.MULTILINE)
    assert oldest is not None
    major, minor = int(oldest[1]), int(oldest[2])
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">={major}.{minor}.0-0"
    for version in (f"{major}.{minor}.0", f"v{major}.{minor}.4-eks-1234", "1.34.4"):
        run_helm(*template_args(), "--kube-version", version)
    refused = run_helm(*template_args(), "--kube-version", f"{major}.{minor - 1}.9", check=False)
    assert refused.returncode != 0
    assert f"incompatible with Kubernetes v{major}.{minor - 1}.9" in refused.stderr
