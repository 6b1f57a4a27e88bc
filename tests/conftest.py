"""Fixtures shared by every tier.

`control_plane` is lazy like every pytest fixture: a session whose tests don't ask for it (for
example `pytest tests/unit`) starts no process. When the binaries cannot be found it FAILS, not
skips: CI always runs tier 3, so a missing binary is a broken setup, never a reason to pass.

Every temporary file of the session (the harness's, the commands' it runs, pytest's own
tmp_path) goes to a directory of the session's own, through TMPDIR; `nothing_left_behind`
fails the session when the harness or a command left anything there, and the directory is
removed at the end whatever happened.

The tiers are marked by where they live (`unit`, `server`, `e2e`, `chart`), so `-m "not e2e"`
selects every test that needs no API server (`make test-fast`). Hypothesis runs the `local`
profile (few examples, random, fast feedback) unless `CI=true` selects `ci` (more examples,
derandomized so a CI failure replays anywhere with `HYPOTHESIS_PROFILE=ci`);
`HYPOTHESIS_PROFILE` names one explicitly.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kaptain_warden.testing.binaries import find_binaries, kubernetes_version
from kaptain_warden.testing.controlplane import DEFAULT_CONTROLLERS, ControlPlane
from kaptain_warden.testing.errors import ControlPlaneError
from kube_versions import JOB_MANAGED_BY, server_version

_JOB_CONTROLLER = "job-controller"
_SESSION_TMP = pytest.StashKey[Path]()
_TIERS = ("unit", "server", "e2e", "chart")  # directories under tests/, and their markers

# No deadline in either profile: the machines the suite runs on are shared, and a deadline would
# measure their load, not the code (benchmarks measure speed; tests assert behaviour).
# Both start from Hypothesis' own defaults (with CI set, it would otherwise start from its own
# "ci" profile, which it loads by itself).
_DEFAULT = settings.get_profile("default")
settings.register_profile("local", _DEFAULT, max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    _DEFAULT,
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],  # a loaded CI machine is slow, not the test
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE")
    or ("ci" if os.environ.get("CI", "").lower() == "true" else "local")
)


def pytest_configure(config: pytest.Config) -> None:
    directory = Path(tempfile.mkdtemp(prefix="kwt-"))
    config.stash[_SESSION_TMP] = directory
    os.environ["TMPDIR"] = str(directory)  # for every process the tests start
    tempfile.tempdir = None  # recomputed from TMPDIR on next use


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, from the directory it is in."""
    tests = Path(__file__).resolve().parent
    for item in items:
        relative = item.path.resolve().relative_to(tests)
        if len(relative.parts) > 1 and relative.parts[0] in _TIERS:
            item.add_marker(relative.parts[0])


def pytest_unconfigure(config: pytest.Config) -> None:
    directory = config.stash.get(_SESSION_TMP, None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the last test and every other session fixture (this one is set up first, so torn
    down last): the session's temporary directory holds nothing but pytest's tmp_path tree.
    A control plane, a stack, a command that left a directory or a credential file fails it."""
    directory = request.config.stash[_SESSION_TMP]
    yield
    left = sorted(str(p) for p in directory.iterdir() if not p.name.startswith("pytest-of-"))
    if left:
        pytest.fail(f"the tests left temporary files behind: {', '.join(left)}", pytrace=False)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager, and the upstream CRDs.

    One per test session; stopped at the end of the session even when tests failed. Before
    1.32 its controller manager runs no Job controller (see tests/kube_versions.py).
    """
    failure = None
    try:
        binaries = find_binaries()  # may build them (hack/test-assets)
        controllers = DEFAULT_CONTROLLERS
        if kubernetes_version(binaries.kube_apiserver)[:2] < JOB_MANAGED_BY:
            controllers = tuple(c for c in DEFAULT_CONTROLLERS if c != _JOB_CONTROLLER)
        plane = ControlPlane(
            controller_manager=True, crds=True, binaries=binaries, controllers=controllers
        )
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


@pytest.fixture(scope="session")
def kube_version(kube_admin: k8s.ApiClient) -> tuple[int, int]:
    """(major, minor) of the API server under test, as it reports itself."""
    return server_version(kube_admin)


@pytest.fixture
def job_controller(
    control_plane: ControlPlane, kube_admin: k8s.ApiClient, kube_version: tuple[int, int]
) -> Iterator[tuple[k8s.ApiClient, str]]:
    """An admin ApiClient and a fresh namespace where the built-in Job controller runs Jobs.

    From 1.32 the session's control plane (its test Jobs that must not run say so with
    spec.managedBy). Before 1.32 the session runs no Job controller, so this is a control plane
    of the test's own: the garbage collector and the Job controller, same binaries.
    """
    if kube_version >= JOB_MANAGED_BY:
        name = _create_namespace(kube_admin)
        yield kube_admin, name
        k8s.CoreV1Api(kube_admin).delete_namespace(name)
        return
    with (
        ControlPlane(
            controller_manager=True,
            binaries=control_plane.binaries,
            controllers=("garbage-collector-controller", _JOB_CONTROLLER),
        ) as plane,
        plane.api_client() as api_client,
    ):
        yield api_client, _create_namespace(api_client)


def _create_namespace(api_client: k8s.ApiClient) -> str:
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    k8s.CoreV1Api(api_client).create_namespace(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    return name


@pytest.fixture
def namespace(kube_admin: k8s.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test; deleted afterwards (the namespace controller empties it)."""
    name = _create_namespace(kube_admin)
    core = k8s.CoreV1Api(kube_admin)
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise
