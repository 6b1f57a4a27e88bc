"""Tier 3: the chart's manifests on a real API server; helm install, upgrade and the hooks' work."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from helm_chart import CHART, CHART_CRDS, CI_VALUES, render, run_helm
from kaptain_warden.certs.settings import CertsSettings
from kaptain_warden.certs.sync import CertificateManager
from kaptain_warden.certs.unregister import unregister_webhooks
from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import request_json
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.testing.controlplane import ControlPlane

pytestmark = pytest.mark.e2e

# Kinds whose CRDs a cluster without cert-manager or the Prometheus Operator lacks: checked with
# a server-side dry run against stand-in CRDs (tests/chart/crds) instead of being created.
DRY_RUN_GROUPS = ("cert-manager.io/", "monitoring.coreos.com/")
CLUSTER_KINDS = (
    "clusterroles.rbac.authorization.k8s.io",
    "clusterrolebindings.rbac.authorization.k8s.io",
    "mutatingwebhookconfigurations.admissionregistration.k8s.io",
    "validatingwebhookconfigurations.admissionregistration.k8s.io",
)


def service_account(namespace: str, name: str) -> tuple[str, list[str]]:
    """The user name and groups the API server gives a ServiceAccount's token."""
    return (
        f"system:serviceaccount:{namespace}:{name}",
        ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
    )


@pytest.fixture(scope="module")
def chart_crds(control_plane: ControlPlane) -> list[str]:
    return control_plane.install_crds(crd_dir=CHART_CRDS)


@pytest.fixture
def release(control_plane: ControlPlane) -> Iterator[str]:
    """A unique release name; its cluster-scoped objects are deleted afterwards."""
    name = f"kw{uuid.uuid4().hex[:6]}"
    yield name
    control_plane.run_kubectl(
        "delete",
        ",".join(CLUSTER_KINDS),
        "-l",
        f"app.kubernetes.io/instance={name}",
        "--ignore-not-found",
        "--wait=false",
        check=False,
    )


def kubectl_create(
    control_plane: ControlPlane, documents: list[dict[str, Any]], *extra: str
) -> str:
    result = control_plane.run_kubectl(
        "create", "-f", "-", "--validate=strict", *extra, input=yaml.safe_dump_all(documents)
    )
    return result.stdout


@pytest.mark.parametrize("value_set", sorted(CI_VALUES))
def test_every_rendered_manifest_is_accepted_by_the_api_server(
    control_plane, chart_crds, namespace, release, value_set
):
    manifests = render(release=release, namespace=namespace, values=[CI_VALUES[value_set]])
    dry = [m for m in manifests if m["apiVersion"].startswith(DRY_RUN_GROUPS)]
    real = [m for m in manifests if m not in dry]
    created = kubectl_create(control_plane, real)
    assert created.count(" created") == len(real), created
    if dry:
        checked = kubectl_create(control_plane, dry, "--dry-run=server")
        assert checked.count("created (server dry run)") == len(dry), checked
    # The objects are there as rendered (defaults aside): the webhooks kept their rules.
    stored = control_plane.run_kubectl(
        "get", "mutatingwebhookconfiguration", f"{release}-kaptain-warden", "-o", "yaml"
    ).stdout
    rendered_hooks = next(m for m in real if m["kind"] == "MutatingWebhookConfiguration")
    assert yaml.safe_load(stored)["webhooks"][0]["rules"] == rendered_hooks["webhooks"][0]["rules"]


def test_stand_in_crds_reject_a_misspelled_field(control_plane, chart_crds, namespace):
    """The dry run above is a real check: a field cert-manager does not have is refused."""
    bad = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "typo", "namespace": namespace},
        "spec": {"secretName": "s", "issuerRef": {"name": "i"}, "dnsName": ["x"]},
    }
    result = control_plane.run_kubectl(
        "create",
        "-f",
        "-",
        "--validate=strict",
        "--dry-run=server",
        input=yaml.safe_dump(bad),
        check=False,
    )
    assert result.returncode != 0
    assert 'unknown field "spec.dnsName"' in result.stderr


def helm(control_plane: ControlPlane, *args: str, check: bool = True):
    return run_helm(*args, f"--kubeconfig={control_plane.kubeconfig_path}", check=check)


def test_notes_warn_about_one_replica_fail_closed_webhooks_and_dry_runs(control_plane):
    def notes(*set_args: str) -> str:
        args = ["install", "kw-notes", str(CHART), "--dry-run=client", "--namespace", "kw"]
        for value in set_args:
            args += ["--set", value]
        return helm(control_plane, *args).stdout.split("NOTES:", 1)[1]

    quiet = notes()
    assert "WARNING" not in quiet and "NOTE:" not in quiet
    assert "enforcing" in quiet
    one = notes("webhook.replicas=1", "webhook.podDisruptionBudget.enabled=false")
    assert "webhook.replicas is 1: no high availability" in one
    fail = notes("webhook.failurePolicy=Fail")
    assert "webhook.failurePolicy is Fail" in fail
    dry = notes("sweeper.dryRun=true")
    assert "DRY RUN" in dry and "sweeper.dryRun is true" in dry


def test_helm_install_bootstrap_upgrade_keeps_the_ca_and_the_cleanup_hook_unregisters(
    control_plane, kube_admin, namespace, release
):
    """The chart's own flow, with the chart's ServiceAccounts doing the work:

    install -> the webhook's ServiceAccount bootstraps TLS into the chart's Secret and both
    webhook configurations -> an upgrade that changes the webhooks keeps the CA and the
    caBundles (Helm's three-way merge leaves what it never rendered) -> the cleanup hook's
    ServiceAccount removes the webhook configurations -> uninstall.
    """
    helm(control_plane, "install", release, str(CHART), "--namespace", namespace)
    fullname = f"{release}-kaptain-warden"
    settings = CertsSettings(
        namespace=namespace,
        secret_name=f"{fullname}-webhook-tls",
        service_name=f"{fullname}-webhook",
        mutating_webhook=fullname,
        validating_webhook=fullname,
    )
    user, groups = service_account(namespace, f"{fullname}-webhook")
    with control_plane.impersonating_api_client(user, groups) as as_webhook:
        first = CertificateManager(KubeApi(as_webhook), settings).sync()
    assert first.changes == ("created a CA",) and first.published

    helm(
        control_plane,
        "upgrade",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        "webhook.timeoutSeconds=7",
        "--set",
        "webhook.failurePolicy=Fail",
    )
    core = k8s.CoreV1Api(kube_admin)
    secret = core.read_namespaced_secret(settings.secret_name, namespace)
    assert base64.b64decode(secret.data["ca.crt"]) == first.material.bundle_pem
    bundle = base64.b64encode(first.material.bundle_pem).decode()
    for resource in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        config = request_json(
            kube_admin, "GET", f"/apis/admissionregistration.k8s.io/v1/{resource}/{fullname}"
        )
        (hook,) = config["webhooks"]
        assert hook["timeoutSeconds"] == 7 and hook["failurePolicy"] == "Fail"
        assert hook["clientConfig"]["caBundle"] == bundle
    with control_plane.impersonating_api_client(user, groups) as as_webhook:
        again = CertificateManager(KubeApi(as_webhook), settings).sync()
    assert again.changes == () and again.published

    cleanup_user, cleanup_groups = service_account(namespace, f"{fullname}-cleanup")
    # The hook's ServiceAccount and RBAC exist only while the hook runs: create them as Helm does.
    hooks = [
        m
        for m in render(release=release, namespace=namespace)
        if m["metadata"].get("annotations", {}).get("helm.sh/hook") == "pre-delete"
        and m["kind"] != "Job"
    ]
    kubectl_create(control_plane, hooks)
    with control_plane.impersonating_api_client(cleanup_user, cleanup_groups) as as_cleanup:
        deleted = unregister_webhooks(KubeApi(as_cleanup), mutating=fullname, validating=fullname)
        assert deleted == [
            f"mutatingwebhookconfigurations/{fullname}",
            f"validatingwebhookconfigurations/{fullname}",
        ]
        assert (
            unregister_webhooks(KubeApi(as_cleanup), mutating=fullname, validating=fullname) == []
        )
        with pytest.raises(ApiError) as denied:
            request_json(as_cleanup, "DELETE", f"/api/v1/namespaces/{namespace}/secrets/x")
        assert denied.value.status == 403
    # --no-hooks: the hook Job would wait for a kubelet this control plane does not have.
    helm(control_plane, "uninstall", release, "--namespace", namespace, "--no-hooks")
    kubectl_create_cleanup = control_plane.run_kubectl(
        "get", "secret", settings.secret_name, "-n", namespace, check=False
    )
    assert "NotFound" in kubectl_create_cleanup.stderr
