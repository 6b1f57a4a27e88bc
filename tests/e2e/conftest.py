"""Fixtures shared by tier-3 modules."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from kaptain_warden.install.webhook_configurations import WebhookClient, webhook_configurations
from kaptain_warden.kube.client import request_json
from kaptain_warden.policies.loader import load_policy

ADMISSION = "/apis/admissionregistration.k8s.io/v1"


@pytest.fixture
def webhooks(kube_admin: k8s.ApiClient) -> Iterator[str]:
    """Both webhook configurations, aimed at a closed loopback port and failing open: objects
    for certificate code to patch, which never intercept anything that matters."""
    name = f"webhooks-{uuid.uuid4().hex[:8]}"
    documents = webhook_configurations(
        policy=load_policy(),
        client=WebhookClient(url="https://127.0.0.1:9/"),
        ca_bundle=b"",
        name=name,
        failure_policy="Ignore",
    )
    paths = (
        f"{ADMISSION}/mutatingwebhookconfigurations",
        f"{ADMISSION}/validatingwebhookconfigurations",
    )
    for path, document in zip(paths, documents, strict=True):
        request_json(kube_admin, "POST", path, body=document)
    yield name
    for path in paths:
        request_json(kube_admin, "DELETE", f"{path}/{name}")
