"""Fixtures shared by every tier.

`control_plane` is lazy like every pytest fixture: a session whose tests don't ask for it (for
example `pytest tests/unit`) starts no process. When the binaries cannot be found it FAILS, not
skips: CI always runs tier 3, so a missing binary is a broken setup, never a reason to pass.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kaptain_warden.testing.controlplane import ControlPlane, ControlPlaneError


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager, with the test CRDs installed.

    One per test session; stopped at the end of the session even when tests failed.
    """
    plane = ControlPlane(controller_manager=True, crds=True)
    failure = None
    try:
        plane.start()  # cleans up after itself when it fails
    except ControlPlaneError as error:  # BinariesNotFoundError included
        failure = str(error)
    if failure is not None:  # outside `except`: the message alone, without a chained traceback
        pytest.fail(f"the tier-3 control plane could not start: {failure}", pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube_admin(control_plane: ControlPlane) -> Iterator[k8s.ApiClient]:
    """An ApiClient for the admin identity (CN=admin, O=system:masters)."""
    with control_plane.api_client() as api_client:
        yield api_client


@pytest.fixture
def namespace(kube_admin: k8s.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test; deleted afterwards (the namespace controller empties it)."""
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    core = k8s.CoreV1Api(kube_admin)
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise
