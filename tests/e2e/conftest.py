"""Fixtures shared by tier-3 modules."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from kaptain_warden.install.webhook_configurations import WebhookClient, webhook_configurations
from kaptain_warden.kube.client import request_json
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.errors import ControlPlaneError
from kaptain_warden.testing.notebook import Notebook, sdk_environments
from kaptain_warden.testing.stack import WardenStack, create_profile_namespace, notebook_user

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


@pytest.fixture(scope="module")
def warden(control_plane: ControlPlane) -> Iterator[WardenStack]:
    """The admission server, its webhooks registered with failurePolicy Fail."""
    with WardenStack(control_plane, failure_policy="Fail") as stack:
        yield stack


@pytest.fixture
def profile(warden: WardenStack, kube_admin: k8s.ApiClient) -> str:
    """A fresh Kubeflow-profile-like namespace whose default-editor may create SDK objects."""
    name = f"team-{uuid.uuid4().hex[:8]}"
    create_profile_namespace(kube_admin, name)
    return name


@pytest.fixture
def notebook(
    control_plane: ControlPlane, warden: WardenStack, profile: str
) -> Iterator[k8s.ApiClient]:
    """An API client as the profile's notebook (impersonated), the webhooks registered."""
    with control_plane.impersonating_api_client(notebook_user(profile)) as api_client:
        yield api_client


@pytest.fixture
def token_notebook(control_plane: ControlPlane, profile: str, tmp_path: Path) -> Notebook:
    """A notebook in `profile`: kubectl and the SDK kernels act with its ServiceAccount token."""
    return Notebook.open(control_plane, profile, tmp_path / "notebook")


@pytest.fixture(scope="session")
def sdk_envs() -> dict[str, Path]:
    """The SDKs' virtualenvs, built first when missing (minutes, once: outside any test's
    timeout). A build that fails FAILS the tests that need it, never skips them."""
    failure = None
    try:
        return sdk_environments()
    except ControlPlaneError as error:
        failure = str(error)
    pytest.fail(f"the SDK environments could not be built: {failure}", pytrace=False)
