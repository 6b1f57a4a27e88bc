"""Tier 3: the self-managed TLS bootstrap against a real API server."""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client as k8s

from kaptain_warden.certs.rotation import BUNDLE_GENERATION
from kaptain_warden.certs.settings import CertsSettings, SyncResult
from kaptain_warden.certs.sync import CertificateManager
from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import request_json
from kaptain_warden.testing.controlplane import ControlPlane

pytestmark = pytest.mark.e2e

ADMISSION = "/apis/admissionregistration.k8s.io/v1"


def settings(namespace: str, *, cert_dir: Path | None = None, webhooks: str | None = None):
    return CertsSettings(
        namespace=namespace,
        secret_name="warden-tls",
        service_name="warden",
        cert_dir=cert_dir,
        mutating_webhook=webhooks,
        validating_webhook=webhooks,
    )


def race(control_plane: ControlPlane, make_settings: Any, replicas: int) -> list[SyncResult]:
    """`replicas` managers, each with its own connection, released at the same instant."""
    barrier = threading.Barrier(replicas)
    results: list[SyncResult | BaseException] = [RuntimeError("did not run")] * replicas

    def replica(index: int) -> None:
        with control_plane.api_client() as api_client:
            manager = CertificateManager(KubeApi(api_client), make_settings(index))
            barrier.wait()
            try:
                results[index] = manager.sync()
            except BaseException as exc:  # reported below, with the others' results
                results[index] = exc

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures
    return [r for r in results if isinstance(r, SyncResult)]


def stored(kube_admin: k8s.ApiClient, namespace: str) -> dict[str, bytes]:
    secret = k8s.CoreV1Api(kube_admin).read_namespaced_secret("warden-tls", namespace)
    return {k: base64.b64decode(v) for k, v in secret.data.items()}


@pytest.mark.parametrize("secret_exists", [False, True], ids=["absent", "chart-created-empty"])
def test_replicas_starting_together_agree_on_one_ca(
    control_plane, kube_admin, namespace, tmp_path, secret_exists
):
    if secret_exists:  # what the chart does: an empty shell, filled at a resourceVersion
        k8s.CoreV1Api(kube_admin).create_namespaced_secret(
            namespace, {"metadata": {"name": "warden-tls"}, "type": "Opaque"}
        )
    results = race(
        control_plane, lambda i: settings(namespace, cert_dir=tmp_path / f"replica-{i}"), 4
    )
    cas = {r.material.ca.cert_pem for r in results}
    assert len(cas) == 1
    assert sum(1 for r in results if "created a CA" in r.changes) == 1
    data = stored(kube_admin, namespace)
    assert data["ca-signing.crt"] == cas.pop()
    assert data["ca.crt"] == data["ca-signing.crt"]
    for i in range(4):
        directory = tmp_path / f"replica-{i}"
        assert (directory / "tls.crt").read_bytes() == data["tls.crt"]
        assert (directory / "ca.crt").read_bytes() == data["ca.crt"]
        assert (directory / "tls.crt").is_symlink()  # the atomic-swap layout


def bundles(kube_admin: k8s.ApiClient, name: str) -> list[tuple[bytes, str | None]]:
    found = []
    for resource in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        config = request_json(kube_admin, "GET", f"{ADMISSION}/{resource}/{name}")
        annotations = config["metadata"].get("annotations") or {}
        for hook in config["webhooks"]:
            found.append(
                (
                    base64.b64decode(hook["clientConfig"].get("caBundle", "")),
                    annotations.get(BUNDLE_GENERATION),
                )
            )
    return found


def test_the_bundle_is_published_into_both_webhook_configurations(
    control_plane, kube_admin, namespace, webhooks
):
    with control_plane.api_client() as api_client:
        result = CertificateManager(
            KubeApi(api_client), settings(namespace, webhooks=webhooks)
        ).sync()
    assert result.published
    generation = str(result.material.generation)
    assert bundles(kube_admin, webhooks) == [(result.material.bundle_pem, generation)] * 2


def test_a_replica_with_an_older_bundle_never_writes_it_back(
    control_plane, kube_admin, namespace, webhooks
):
    with control_plane.api_client() as api_client:
        manager = CertificateManager(KubeApi(api_client), settings(namespace, webhooks=webhooks))
        manager.sync()
    # Another replica has since published generation 99 (a bundle this one never read).
    newer = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nnewer\n").decode()
    for resource in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        patch = [
            {"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": newer},
            {
                "op": "replace",
                "path": "/metadata/annotations/" + BUNDLE_GENERATION.replace("/", "~1"),
                "value": "99",
            },
        ]
        request_json(
            kube_admin,
            "PATCH",
            f"{ADMISSION}/{resource}/{webhooks}",
            body=patch,
            content_type="application/json-patch+json",
        )
    with control_plane.api_client() as api_client:
        result = CertificateManager(
            KubeApi(api_client), settings(namespace, webhooks=webhooks)
        ).sync()
    assert not result.published
    assert {generation for _, generation in bundles(kube_admin, webhooks)} == {"99"}


def test_kaptain_warden_certs_bootstrap_writes_the_files_for_the_service(
    control_plane, namespace, webhooks, tmp_path
):
    cert_dir = tmp_path / "tls"
    command = [
        str(Path(sys.executable).with_name("kaptain-warden")),
        "certs",
        "bootstrap",
        f"--kubeconfig={control_plane.kubeconfig_path}",
        f"--namespace={namespace}",
        "--secret=warden-tls",
        "--service=warden",
        f"--cert-dir={cert_dir}",
        f"--mutating-webhook={webhooks}",
        f"--validating-webhook={webhooks}",
        "--log-format=text",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "certificates ready" in result.stderr
    cert = x509.load_pem_x509_certificate((cert_dir / "tls.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((cert_dir / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"warden.{namespace}.svc" in names.get_values_for_type(x509.DNSName)
    assert oct((cert_dir / "tls.key").stat().st_mode & 0o777) == "0o600"


def test_bootstrap_without_rights_fails_with_the_api_servers_reason(
    control_plane, namespace, tmp_path
):
    """As a ServiceAccount with no RBAC at all: exit 1 after the timeout, 403 in the log."""
    kubeconfig = control_plane.write_kubeconfig(
        tmp_path / "nobody.kubeconfig",
        user=f"system:serviceaccount:{namespace}:nobody",
        groups=("system:serviceaccounts",),
    )
    command = [
        str(Path(sys.executable).with_name("kaptain-warden")),
        "certs",
        "bootstrap",
        f"--kubeconfig={kubeconfig}",
        f"--namespace={namespace}",
        "--secret=warden-tls",
        "--service=warden",
        f"--cert-dir={tmp_path / 'tls'}",
        "--timeout=1s",
        "--retry-interval=1s",
        "--log-format=text",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "403" in result.stderr and "no serving certificate" in result.stderr
