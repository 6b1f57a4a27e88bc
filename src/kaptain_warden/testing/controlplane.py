"""A local Kubernetes control plane for tier-3 tests, run the way controller-runtime's envtest does.

`ControlPlane` starts etcd and kube-apiserver (and, when asked, kube-controller-manager for the
garbage collector, Job and TTL-after-finished controllers) on free loopback ports, with
certificates from `kaptain_warden.certs.pki`: one CA signs the API server's serving certificate
and the client certificates (the admin identity is CN=admin, O=system:masters).

Every process runs in its own process group and logs to a file in a temporary directory. `stop()`
sends SIGTERM, then SIGKILL after a timeout, and removes the directory. Two backstops make sure
no process outlives the Python process that started it: an `atexit` handler, and a small
watchdog process that kills the process groups and removes the directory when its pipe from the
parent closes (which also happens when the parent is killed with SIGKILL).

Binaries are found like envtest finds them: `KUBEBUILDER_ASSETS` (or one `TEST_ASSET_*` variable
per binary), else the directory that `hack/test-assets` prints as the last line on stdout.

    with ControlPlane(controller_manager=True, crds=True) as cp:
        core = kubernetes.client.CoreV1Api(cp.api_client())
        alice = kubernetes.client.CoreV1Api(cp.impersonating_api_client("alice", ["team-a"]))
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime as dt
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

import urllib3
import yaml
from cryptography.hazmat.primitives import serialization
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kaptain_warden.certs.pki import (
    CertKeyPair,
    build_ca,
    build_certificate,
    generate_private_key,
)
from kaptain_warden.testing.assets import (
    TEST_ASSETS_RELATIVE,
    AssetsNotFoundError,
    find_test_assets_script,
    run_test_assets,
)
from kaptain_warden.testing.upstream import default_crd_files, find_upstream, load_yaml_documents

__all__ = [
    "DEFAULT_CONTROLLERS",
    "SERVICE_CLUSTER_IP_RANGE",
    "Binaries",
    "BinariesNotFoundError",
    "ControlPlane",
    "ControlPlaneError",
    "ManagedProcess",
    "crd_documents",
    "find_binaries",
    "find_test_assets_script",
    "free_ports",
    "install_crds",
    "kubernetes_version",
    "run_test_assets",
]

SERVICE_CLUSTER_IP_RANGE: Final = "10.0.0.0/24"
#: The first address of the service range: the `kubernetes` Service's ClusterIP.
_KUBERNETES_SERVICE_IP: Final = "10.0.0.1"
#: kube-controller-manager controllers the tests rely on (names as in `--controllers`).
DEFAULT_CONTROLLERS: Final = (
    "garbage-collector-controller",  # cascading deletion: propagationPolicy Background/Orphan
    "job-controller",
    "ttl-after-finished-controller",
    "namespace-controller",  # so that deleted namespaces go away
    "serviceaccount-controller",  # a `default` ServiceAccount in each namespace
    "serviceaccount-token-controller",
    # Fills the aggregated ClusterRoles admin, edit and view (empty without it), which
    # Kubeflow-like RoleBindings use.
    "clusterrole-aggregation-controller",
)
_AGGREGATION_CONTROLLER: Final = "clusterrole-aggregation-controller"

# Binary name -> the envtest variable that names it directly.
_ASSET_VARIABLES: Final = {
    "kube-apiserver": "TEST_ASSET_KUBE_APISERVER",
    "etcd": "TEST_ASSET_ETCD",
    "kubectl": "TEST_ASSET_KUBECTL",
    "kube-controller-manager": "TEST_ASSET_KUBE_CONTROLLER_MANAGER",
}
_POLL_INTERVAL: Final = 0.05
_LOG_TAIL_LINES: Final = 25
_START_ATTEMPTS: Final = 3
_CERT_VALIDITY: Final = dt.timedelta(days=1)
_CLUSTER_NAME: Final = "kaptain-warden-test"


class ControlPlaneError(RuntimeError):
    """The control plane could not be started or stopped, or a component misbehaved."""


class BinariesNotFoundError(ControlPlaneError, AssetsNotFoundError):
    """The control-plane binaries are neither configured nor obtainable with hack/test-assets."""


class _PortTakenError(ControlPlaneError):
    """A process could not bind a port we picked: someone else took it in the meantime."""


# --------------------------------------------------------------------------------------------
# Finding the binaries
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the control-plane executables."""

    kube_apiserver: Path
    etcd: Path
    kubectl: Path
    kube_controller_manager: Path | None = None
    #: helm, when it sits next to the others (hack/test-assets provides it); not needed here.
    helm: Path | None = None


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def kubernetes_version(binary: Path) -> tuple[int, int, int]:
    """The version a kube-apiserver or kube-controller-manager binary reports with `--version`.

    Raises:
        ControlPlaneError: when it cannot run or prints no `Kubernetes vX.Y.Z`.
    """
    try:
        output = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise ControlPlaneError(f"{binary} --version failed: {error}") from error
    match = re.search(r"Kubernetes v(\d+)\.(\d+)\.(\d+)", output)
    if match is None:
        raise ControlPlaneError(f"{binary} --version printed no Kubernetes version: {output!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


_HOW_TO_GET_BINARIES: Final = (
    "To get the binaries, run hack/test-assets from a kaptain-warden checkout (it builds "
    "kube-apiserver, kube-controller-manager, kubectl, etcd and helm from their Go modules "
    "once, which needs Go, and prints the cache directory as its last line), then either "
    "let the tests find it or export KUBEBUILDER_ASSETS=<that directory>. Individual "
    "binaries can also be named with TEST_ASSET_KUBE_APISERVER, TEST_ASSET_ETCD, "
    "TEST_ASSET_KUBECTL and TEST_ASSET_KUBE_CONTROLLER_MANAGER."
)


def find_binaries(
    *,
    controller_manager: bool = True,
    test_assets_script: Path | None = None,
    environ: Mapping[str, str] | None = None,
    run_script: bool = True,
) -> Binaries:
    """Locate kube-apiserver, etcd, kubectl (and kube-controller-manager), envtest-style.

    Order, per binary: its `TEST_ASSET_*` variable (which must then name an executable), then
    `$KUBEBUILDER_ASSETS/<binary>`. When any binary is still missing, `test_assets_script`
    (default: `hack/test-assets` found by `find_test_assets_script`) is run, unless `run_script`
    is false, and its directory fills the gaps.

    Raises:
        BinariesNotFoundError: with what was looked at and how to get the binaries.
    """
    env = os.environ if environ is None else environ
    needed = ["kube-apiserver", "etcd", "kubectl"]
    if controller_manager:
        needed.append("kube-controller-manager")
    found: dict[str, Path] = {}
    assets = env.get("KUBEBUILDER_ASSETS", "").strip()
    for name in needed:
        variable = _ASSET_VARIABLES[name]
        explicit = env.get(variable, "").strip()
        if explicit:
            path = Path(explicit).expanduser().resolve()
            if not _is_executable(path):
                raise BinariesNotFoundError(
                    f"{variable}={explicit} does not name an executable file. "
                    f"{_HOW_TO_GET_BINARIES}"
                )
            found[name] = path
        elif assets and _is_executable(Path(assets) / name):
            found[name] = (Path(assets) / name).absolute()
    # Not resolved: hack/test-assets' directory holds symlinks into per-version caches, and the
    # binaries' directory is where helm is looked for.
    directory = Path(assets).absolute() if assets else None
    missing = [name for name in needed if name not in found]
    if missing:
        looked_at = f"KUBEBUILDER_ASSETS={assets!r}" if assets else "KUBEBUILDER_ASSETS is not set"
        if not run_script:
            raise BinariesNotFoundError(
                f"missing control-plane binaries: {', '.join(missing)} ({looked_at}). "
                f"{_HOW_TO_GET_BINARIES}"
            )
        script = test_assets_script or find_test_assets_script()
        if script is None:
            raise BinariesNotFoundError(
                f"missing control-plane binaries: {', '.join(missing)} ({looked_at}), and no "
                f"{TEST_ASSETS_RELATIVE} was found above {Path(__file__).parent} or {Path.cwd()}. "
                f"{_HOW_TO_GET_BINARIES}"
            )
        if not _is_executable(script):
            raise BinariesNotFoundError(f"{script} is not an executable file")
        try:
            directory = run_test_assets(script, environ=env)
        except AssetsNotFoundError as error:
            raise BinariesNotFoundError(f"{error}\n{_HOW_TO_GET_BINARIES}") from error
        for name in missing:
            path = directory / name
            if not _is_executable(path):
                raise BinariesNotFoundError(
                    f"{script} reported {directory}, which holds no executable {name}. "
                    f"{_HOW_TO_GET_BINARIES}"
                )
            found[name] = path.absolute()
    helm = directory / "helm" if directory is not None else None
    return Binaries(
        kube_apiserver=found["kube-apiserver"],
        etcd=found["etcd"],
        kubectl=found["kubectl"],
        kube_controller_manager=found.get("kube-controller-manager"),
        helm=helm if helm is not None and _is_executable(helm) else None,
    )


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class ManagedProcess:
    """One control-plane process: its own process group, its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        """Start the process in a new session (so a new process group, led by it)."""
        if self._popen is not None:
            raise ControlPlaneError(f"{self.name} was already started")
        self._log = self.log_path.open("ab")
        try:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
            )
        except OSError as error:
            self._log.close()
            raise ControlPlaneError(f"cannot run {self.argv[0]}: {error}") from error

    @property
    def pid(self) -> int:
        """The process id, which is also its process group id."""
        if self._popen is None:
            raise ControlPlaneError(f"{self.name} has not been started")
        return self._popen.pid

    @property
    def started(self) -> bool:
        """Whether `start` has been called (successfully)."""
        return self._popen is not None

    def poll(self) -> int | None:
        """The exit code, or None while it runs (or if it never started)."""
        return None if self._popen is None else self._popen.poll()

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the process's output."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                size = log.tell()
                log.seek(max(0, size - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        tail = text.splitlines()[-lines:]
        return "\n".join(tail) if tail else "(empty log)"

    def exit_description(self) -> str:
        """'exited with code N' or 'was killed by SIGNAME'."""
        code = self.poll()
        if code is None:
            return "is still running"
        if code < 0:
            return f"was killed by {_signal_name(-code)}"
        return f"exited with code {code}"

    def failure(self, context: str) -> ControlPlaneError:
        """An error for a process that ended when it should not have."""
        return ControlPlaneError(
            f"{self.name} {self.exit_description()} {context}; "
            f"last lines of its log:\n{self.log_tail()}"
        )

    def stop(self, timeout: float) -> None:
        """SIGTERM the process group, SIGKILL it after `timeout` seconds, and reap the process."""
        popen = self._popen
        if popen is None:
            return
        try:
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGTERM)
                try:
                    popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(popen.pid, signal.SIGKILL)
                    popen.wait()
            # Anything the process left behind in its group goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)
        finally:
            if self._log is not None:
                self._log.close()


# A process that outlives us by at most a few seconds: it reads commands on stdin and, when the
# pipe closes without a "clear" first (our process ended without stopping the control plane,
# even by SIGKILL), it terminates the registered process groups and removes the directories.
_WATCHDOG_SOURCE: Final = r"""
import os, shutil, signal, sys, time
groups, dirs = set(), set()
for line in sys.stdin:
    command, _, argument = line.rstrip("\n").partition(" ")
    if command == "group":
        groups.add(int(argument))
    elif command == "dir":
        dirs.add(argument)
    elif command == "clear":
        groups.clear()
        dirs.clear()
def alive(group):
    # A group whose members are all zombies is dead: nobody reaps them while our parent is
    # gone until init gets round to it, and some container inits never do.
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open("/proc/" + entry + "/stat") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        state, _, pgrp = stat[stat.rfind(")") + 2 :].split()[:3]
        if int(pgrp) == group and state != "Z":
            return True
    return False
for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 2.0)):
    for group in groups:
        try:
            os.killpg(group, sig)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while any(alive(group) for group in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
for path in dirs:
    shutil.rmtree(path, ignore_errors=True)
"""


class _Watchdog:
    def __init__(self) -> None:
        self._popen = subprocess.Popen(
            [sys.executable, "-I", "-c", _WATCHDOG_SOURCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self._popen.pid

    def _send(self, line: str) -> None:
        stdin = self._popen.stdin
        if stdin is None or stdin.closed:
            return
        with contextlib.suppress(BrokenPipeError, ValueError):
            stdin.write(line.encode() + b"\n")
            stdin.flush()

    def watch_group(self, pgid: int) -> None:
        self._send(f"group {pgid}")

    def watch_dir(self, path: Path) -> None:
        self._send(f"dir {path}")

    def dismiss(self) -> None:
        """Everything was cleaned up: let the watchdog exit without acting."""
        self._send("clear")
        if self._popen.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self._popen.stdin.close()
        try:
            self._popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _certificate_credentials(identity: CertKeyPair) -> dict[str, str]:
    """A kubeconfig `user` entry for a client certificate, data embedded."""
    return {
        "client-certificate-data": _b64(identity.cert_pem),
        "client-key-data": _b64(identity.key_pem),
    }


def _http_get(
    host: str, port: int, path: str, *, context: ssl.SSLContext | None
) -> tuple[int, bytes]:
    connection: http.client.HTTPConnection
    if context is None:
        connection = http.client.HTTPConnection(host, port, timeout=2)
    else:
        connection = http.client.HTTPSConnection(host, port, timeout=2, context=context)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _probe(host: str, port: int, path: str, context: ssl.SSLContext | None) -> bool:
    try:
        status, _ = _http_get(host, port, path, context=context)
    except (OSError, http.client.HTTPException):
        return False
    return status == 200


class _ImpersonatingPoolManager:
    """Wraps a urllib3 pool manager to send one `Impersonate-Group` header line per group.

    A default header of the generated client holds one value, and the API server takes each
    `Impersonate-Group` line as one group (it does not split on commas), so several groups need
    several lines: urllib3 sends each value of an `HTTPHeaderDict` on its own line.
    """

    def __init__(self, inner: urllib3.PoolManager, groups: Sequence[str]) -> None:
        self._inner = inner
        self._groups = tuple(groups)

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        headers = urllib3.HTTPHeaderDict(kwargs.get("headers") or {})
        headers.discard("Impersonate-Group")
        for group in self._groups:
            headers.add("Impersonate-Group", group)
        kwargs["headers"] = headers
        return self._inner.request(method, url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# --------------------------------------------------------------------------------------------
# CRDs
# --------------------------------------------------------------------------------------------


def crd_documents(source: Path | Iterable[Path] | None = None) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in `source`: a directory (its `*.yaml` files), YAML files,
    or by default the test CRDs (`default_crd_files()`: the upstream ones and the KFServing one)."""
    if source is None:
        paths = default_crd_files(find_upstream())
    elif isinstance(source, Path):
        paths = sorted(source.glob("*.yaml")) if source.is_dir() else [source]
    else:
        paths = list(source)
    documents: list[dict[str, Any]] = []
    for path in paths:
        try:
            loaded = list(load_yaml_documents(path))
        except yaml.YAMLError as error:
            raise ControlPlaneError(f"{path} is not valid YAML: {error}") from error
        for document in loaded:
            if not document:
                continue
            if document.get("kind") != "CustomResourceDefinition":
                raise ControlPlaneError(f"{path} holds a {document.get('kind')}, not a CRD")
            documents.append(document)
    if not documents:
        raise ControlPlaneError(f"no CRDs in {source}")
    return documents


def _read_crd(api: k8s.CustomObjectsApi, name: str) -> dict[str, Any]:
    crd: dict[str, Any] = api.get_cluster_custom_object(
        "apiextensions.k8s.io", "v1", "customresourcedefinitions", name
    )  # type: ignore[assignment]  # the generated client annotates it as `object`
    return crd


def _condition(crd: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in crd.get("status", {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition  # type: ignore[no-any-return]
    return None


def install_crds(
    api_client: k8s.ApiClient,
    *,
    crd_dir: Path | Iterable[Path] | None = None,
    timeout: float = 60.0,
) -> list[str]:
    """Create (or replace) every CRD of `crd_dir` (see `crd_documents`) and wait until each is
    served.

    "Served" means the `Established` condition is True and API discovery lists the plural for
    every served version, so clients that discover resources (kubectl, the dynamic client, the
    garbage collector) can use it right away. Returns the CRD names.
    """
    documents = crd_documents(crd_dir)
    api = k8s.CustomObjectsApi(api_client)
    crd_group, crd_version, crd_plural = "apiextensions.k8s.io", "v1", "customresourcedefinitions"
    names: list[str] = []
    for document in documents:
        name = document["metadata"]["name"]
        names.append(name)
        try:
            api.create_cluster_custom_object(crd_group, crd_version, crd_plural, document)
        except ApiException as error:
            if error.status != 409:
                raise ControlPlaneError(
                    f"creating CRD {name} failed: {error.status} {error.reason}: {error.body}"
                ) from error
            existing = _read_crd(api, name)
            replacement = json.loads(json.dumps(document))
            replacement["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
            api.replace_cluster_custom_object(crd_group, crd_version, crd_plural, name, replacement)

    deadline = time.monotonic() + timeout
    for document in documents:
        name = document["metadata"]["name"]
        group = document["spec"]["group"]
        plural = document["spec"]["names"]["plural"]
        versions = [v["name"] for v in document["spec"]["versions"] if v.get("served", True)]
        last_state = "not yet read"
        while True:
            crd = _read_crd(api, name)
            names_accepted = _condition(crd, "NamesAccepted")
            if names_accepted is not None and names_accepted.get("status") == "False":
                raise ControlPlaneError(
                    f"CRD {name}: names not accepted: {names_accepted.get('message')}"
                )
            established = _condition(crd, "Established")
            if established is not None and established.get("status") == "True":
                undiscovered = [v for v in versions if not _discovered(api, group, v, plural)]
                unready = [
                    v
                    for v in versions
                    if v not in undiscovered and not _storage_ready(api, group, v, plural)
                ]
                if not undiscovered and not unready:
                    break
                last_state = (
                    f"established, not yet in discovery for {', '.join(undiscovered)}"
                    if undiscovered
                    else f"storage still initializing for {', '.join(unready)}"
                )
            else:
                last_state = f"conditions {crd.get('status', {}).get('conditions')}"
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"CRD {name} was not served within {timeout:.0f}s; last state: {last_state}"
                )
            time.sleep(_POLL_INTERVAL)
    return names


def _storage_ready(api: k8s.CustomObjectsApi, group: str, version: str, plural: str) -> bool:
    """False while the API server still answers 429 "storage is (re)initializing" for it.

    A CRD is in discovery a moment before its storage serves requests; tests that create
    objects right away would otherwise see that 429 on their first write.
    """
    try:
        api.list_cluster_custom_object(group, version, plural, limit=1)
    except ApiException as error:
        if error.status in (429, 503):
            return False
        raise
    return True


def _discovered(api: k8s.CustomObjectsApi, group: str, version: str, plural: str) -> bool:
    try:
        resources = api.get_api_resources(group, version)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return any(resource.name == plural for resource in resources.resources or [])


# --------------------------------------------------------------------------------------------
# The control plane
# --------------------------------------------------------------------------------------------

# Started control planes, stopped at interpreter exit if their owner did not stop them.
_LIVE: set[ControlPlane] = set()


def _stop_all_live() -> None:
    for control_plane in list(_LIVE):
        with contextlib.suppress(Exception):
            control_plane.stop()


atexit.register(_stop_all_live)


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) on loopback, envtest-style.

    Args:
        controller_manager: also run kube-controller-manager with `controllers`.
        crds: install CRDs during `start`, before the controller manager starts (so its
            garbage collector knows them from the beginning): True for the test CRDs
            (`default_crd_files()`: the upstream ones and the KFServing one), or these YAML files.
        binaries: use these instead of `find_binaries()`.
        test_assets_script: the `hack/test-assets` to run when binaries are missing.
        start_timeout: seconds each component may take to become ready.
        stop_timeout: seconds between SIGTERM and SIGKILL, per process.
        controllers: the kube-controller-manager controllers to run.
        extra_apiserver_args / extra_controller_manager_args: appended to the command lines.
        keep_work_dir: leave the temporary directory (certificates, logs, etcd data) on stop.
    """

    def __init__(
        self,
        *,
        controller_manager: bool = False,
        crds: bool | Sequence[Path] = False,
        binaries: Binaries | None = None,
        test_assets_script: Path | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        extra_apiserver_args: Sequence[str] = (),
        extra_controller_manager_args: Sequence[str] = (),
        keep_work_dir: bool = False,
    ) -> None:
        self._want_controller_manager = controller_manager
        self._crds = crds
        self._crd_files: list[Path] = []
        self._binaries = binaries
        self._test_assets_script = test_assets_script
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._controllers = tuple(controllers)
        self._extra_apiserver_args = tuple(extra_apiserver_args)
        self._extra_controller_manager_args = tuple(extra_controller_manager_args)
        self._keep_work_dir = keep_work_dir

        self._work_dir: Path | None = None
        self._watchdog: _Watchdog | None = None
        self._processes: list[ManagedProcess] = []
        self._ca: CertKeyPair | None = None
        self._apiserver_port = 0
        self._etcd_port = 0
        self._controller_manager_port = 0
        self._state = "new"
        self.startup_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        if self._state == "new":
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        """Start every component and wait until it is ready. Cleans up if anything fails."""
        if self._state != "new":
            raise ControlPlaneError(f"a ControlPlane can be started once (it is {self._state})")
        if self._binaries is None:
            # May build them (hack/test-assets): not counted in startup_seconds.
            self._binaries = find_binaries(
                controller_manager=self._want_controller_manager,
                test_assets_script=self._test_assets_script,
            )
        if self._want_controller_manager and self._binaries.kube_controller_manager is None:
            raise BinariesNotFoundError(
                "a controller manager was asked for, and the given Binaries have no "
                "kube-controller-manager"
            )
        if self._crds is True:
            # May copy them out of their Go modules (hack/test-assets): not counted either.
            try:
                self._crd_files = default_crd_files(find_upstream())
            except AssetsNotFoundError as error:
                raise ControlPlaneError(str(error)) from error
        elif self._crds:
            self._crd_files = list(self._crds)
        self._state = "starting"
        began = time.monotonic()
        _LIVE.add(self)
        try:
            self._watchdog = _Watchdog()
            self._work_dir = Path(tempfile.mkdtemp(prefix="kaptain-warden-controlplane-"))
            self._watchdog.watch_dir(self._work_dir)
            for attempt in range(1, _START_ATTEMPTS + 1):
                try:
                    self._start_components()
                    break
                except _PortTakenError:
                    if attempt == _START_ATTEMPTS:
                        raise
                    # A free port we picked was taken before our process bound it: try again
                    # with new ports and an empty etcd.
                    self._stop_processes()
                    self._processes.clear()
                    shutil.rmtree(self._path("etcd-data"), ignore_errors=True)
        except BaseException:
            self.stop()
            raise
        self._state = "running"
        self.startup_seconds = time.monotonic() - began
        return self

    def _start_components(self) -> None:
        (
            self._etcd_port,
            etcd_peer_port,
            self._apiserver_port,
            self._controller_manager_port,
        ) = free_ports(4)
        self._write_credentials()
        self._start_etcd(etcd_peer_port)
        self._start_apiserver()
        if self._crd_files:
            with self.api_client() as api_client:
                install_crds(api_client, crd_dir=self._crd_files, timeout=self._start_timeout)
        if self._want_controller_manager:
            self._start_controller_manager()

    def _stop_processes(self) -> list[str]:
        """Stop every started process, newest first; return the errors met on the way."""
        errors: list[str] = []
        for process in reversed(self._processes):
            try:
                process.stop(self._stop_timeout)
            except Exception as error:  # keep stopping the others
                errors.append(f"{process.name}: {error}")
        return errors

    def stop(self) -> None:
        """Stop the processes (SIGTERM, then SIGKILL) and remove the temporary directory."""
        if self._state in ("new", "stopped"):
            self._state = "stopped"
            return
        errors = self._stop_processes()
        if self._work_dir is not None and not self._keep_work_dir:
            shutil.rmtree(self._work_dir, ignore_errors=True)
        if self._watchdog is not None:
            # The processes are gone and the directory removed (or kept on purpose).
            self._watchdog.dismiss()
        self._state = "stopped"
        _LIVE.discard(self)
        if errors:
            raise ControlPlaneError("errors while stopping the control plane: " + "; ".join(errors))

    @property
    def running(self) -> bool:
        """Whether `start` completed and `stop` has not been called."""
        return self._state == "running"

    def check(self) -> None:
        """Raise ControlPlaneError when a component has exited since it started."""
        for process in self._processes:
            if process.poll() is not None:
                raise process.failure("while the control plane was in use")

    # -- start-up steps ----------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        if self._work_dir is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._work_dir / name

    def _write_credentials(self) -> None:
        now = dt.datetime.now(dt.UTC)
        ca = build_ca(common_name="kaptain-warden test CA", now=now, valid_for=_CERT_VALIDITY)
        self._ca = ca
        _write(self._path("ca.crt"), ca.cert_pem, 0o644)
        serving = build_certificate(
            ca=ca,
            common_name="kube-apiserver",
            now=now,
            valid_for=_CERT_VALIDITY,
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=("127.0.0.1", _KUBERNETES_SERVICE_IP),
        )
        _write(self._path("apiserver.crt"), serving.cert_pem, 0o644)
        _write(self._path("apiserver.key"), serving.key_pem)
        admin = self.issue_client_certificate("admin", ("system:masters",))
        _write(self._path("admin.crt"), admin.cert_pem, 0o644)
        _write(self._path("admin.key"), admin.key_pem)
        # Service-account tokens: the API server verifies with the public key, the controller
        # manager signs with the private one.
        sa_key = generate_private_key()
        _write(
            self._path("sa.key"),
            sa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        _write(
            self._path("sa.pub"),
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            0o644,
        )
        self._write_kubeconfig_file(
            self._path("kubeconfig"), "admin", _certificate_credentials(admin)
        )

    def _start_process(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        process = ManagedProcess(name, argv, self._path(f"{name}.log"), env=env, cwd=self._work_dir)
        self._processes.append(process)
        process.start()
        if self._watchdog is not None:
            self._watchdog.watch_group(process.pid)
        return process

    def _wait_for(self, process: ManagedProcess, what: str, ready: Callable[[], bool]) -> None:
        """Poll `ready` until it holds; fail early when any started process exits.

        `what` completes "<process> did not ...", e.g. "become ready (GET /readyz)".
        """
        deadline = time.monotonic() + self._start_timeout
        while True:
            for started in self._processes:
                if started.poll() is not None:
                    if "address already in use" in started.log_tail():
                        raise _PortTakenError(started.failure("on a port taken meanwhile"))
                    if started is process:
                        raise started.failure(f"before it could {what}")
                    raise started.failure(f"while waiting for {process.name} to {what}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{process.name} did not {what} within {self._start_timeout:.0f}s; "
                    f"last lines of its log:\n{process.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _start_etcd(self, peer_port: int) -> None:
        assert self._binaries is not None
        client_url = f"http://127.0.0.1:{self._etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        process = self._start_process(
            "etcd",
            [
                str(self._binaries.etcd),
                "--name=default",
                f"--data-dir={self._path('etcd-data')}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._wait_for(
            process,
            f"become healthy (GET {client_url}/health)",
            lambda: _probe("127.0.0.1", self._etcd_port, "/health", None),
        )

    def _start_apiserver(self) -> None:
        assert self._binaries is not None
        port = self._apiserver_port
        process = self._start_process(
            "kube-apiserver",
            [
                str(self._binaries.kube_apiserver),
                "--advertise-address=127.0.0.1",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={self._path('apiserver.crt')}",
                f"--tls-private-key-file={self._path('apiserver.key')}",
                f"--cert-dir={self._path('apiserver-certs')}",
                f"--client-ca-file={self._path('ca.crt')}",
                f"--etcd-servers=http://127.0.0.1:{self._etcd_port}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                # As envtest: no ServiceAccount admission, so Pods need no token Secret/volume.
                "--disable-admission-plugins=ServiceAccount",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                f"--service-account-issuer=https://127.0.0.1:{port}/",
                f"--service-account-key-file={self._path('sa.pub')}",
                f"--service-account-signing-key-file={self._path('sa.key')}",
                *self._extra_apiserver_args,
            ],
        )
        context = self.ssl_context(client_certificate=True)
        self._wait_for(
            process,
            f"become ready (GET {self.url}/readyz)",
            lambda: _probe("127.0.0.1", port, "/readyz", context),
        )
        self._wait_for(
            process,
            "create namespace default",
            lambda: _probe("127.0.0.1", port, "/api/v1/namespaces/default", context),
        )

    def _start_controller_manager(self) -> None:
        assert self._binaries is not None
        assert self._binaries.kube_controller_manager is not None
        now = dt.datetime.now(dt.UTC)
        assert self._ca is not None
        identity = self.issue_client_certificate(
            "system:kube-controller-manager", ("system:masters",)
        )
        kubeconfig = self._write_kubeconfig_file(
            self._path("controller-manager.kubeconfig"),
            "system:kube-controller-manager",
            _certificate_credentials(identity),
        )
        serving = build_certificate(
            ca=self._ca,
            common_name="kube-controller-manager",
            now=now,
            valid_for=_CERT_VALIDITY,
            dns_names=("localhost",),
            ip_addresses=("127.0.0.1",),
        )
        _write(self._path("controller-manager.crt"), serving.cert_pem, 0o644)
        _write(self._path("controller-manager.key"), serving.key_pem)
        port = self._controller_manager_port
        process = self._start_process(
            "kube-controller-manager",
            [
                str(self._binaries.kube_controller_manager),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                f"--controllers={','.join(self._controllers)}",
                f"--service-account-private-key-file={self._path('sa.key')}",
                f"--root-ca-file={self._path('ca.crt')}",
                "--use-service-account-credentials=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={self._path('controller-manager.crt')}",
                f"--tls-private-key-file={self._path('controller-manager.key')}",
                # Client-side rate limits well above the defaults (20/30): tests burst.
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                *self._extra_controller_manager_args,
            ],
        )
        context = self.ssl_context(client_certificate=False)
        self._wait_for(
            process,
            f"become healthy (GET https://127.0.0.1:{port}/healthz)",
            lambda: _probe("127.0.0.1", port, "/healthz", context),
        )
        if _AGGREGATION_CONTROLLER in self._controllers:
            # So that a test may rely on `edit` at once.
            self._wait_for(process, "fill the aggregated ClusterRole edit", self._edit_role_filled)

    def _edit_role_filled(self) -> bool:
        path = "/apis/rbac.authorization.k8s.io/v1/clusterroles/edit"
        try:
            status, body = _http_get(
                "127.0.0.1", self._apiserver_port, path, context=self.ssl_context()
            )
        except (OSError, http.client.HTTPException):
            return False
        return status == 200 and bool(json.loads(body).get("rules"))

    def start_process(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        """Run a program beside the control plane (an upstream controller, say): in its own
        process group, logging to `log_path(name)`, watched by `check()`, stopped (newest first)
        by `stop()`, and killed by the watchdog if this Python process dies first."""
        if self._state != "running":
            raise ControlPlaneError(
                f"start {name} on a running control plane (it is {self._state})"
            )
        return self._start_process(name, argv, env)

    # -- credentials and clients -------------------------------------------------------------

    @property
    def ca(self) -> CertKeyPair:
        """The CA that signed the API server's certificate and that it trusts for clients."""
        if self._ca is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._ca

    def issue_client_certificate(self, user: str, groups: Iterable[str] = ()) -> CertKeyPair:
        """A client certificate the API server accepts as `user` in `groups` (CN and O)."""
        return build_certificate(
            ca=self.ca,
            common_name=user,
            now=dt.datetime.now(dt.UTC),
            valid_for=_CERT_VALIDITY,
            organizations=tuple(groups),
            server=False,
            client=True,
        )

    def _write_kubeconfig_file(
        self, path: Path, user: str, credentials: Mapping[str, str], *, namespace: str = "default"
    ) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": _CLUSTER_NAME,
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": _b64(self.ca.cert_pem),
                    },
                }
            ],
            "users": [{"name": user, "user": dict(credentials)}],
            "contexts": [
                {
                    "name": f"{user}@{_CLUSTER_NAME}",
                    "context": {"cluster": _CLUSTER_NAME, "user": user, "namespace": namespace},
                }
            ],
            "current-context": f"{user}@{_CLUSTER_NAME}",
        }
        return _write(path, yaml.safe_dump(config, sort_keys=False).encode())

    def write_kubeconfig(self, path: Path, *, user: str, groups: Iterable[str] = ()) -> Path:
        """Write a kubeconfig that authenticates as `user` in `groups` with a client certificate.

        For running a program (the sweeper, kubectl) as some identity, e.g. a ServiceAccount:
        `user="system:serviceaccount:ns:name", groups=("system:serviceaccounts",
        "system:serviceaccounts:ns")`.
        """
        return self._write_kubeconfig_file(
            path, user, _certificate_credentials(self.issue_client_certificate(user, groups))
        )

    def write_token_kubeconfig(self, path: Path, *, token: str, user: str, namespace: str) -> Path:
        """Write a kubeconfig that authenticates with a bearer `token`, `namespace` as default.

        What a program in a Pod sees: a ServiceAccount token (e.g. from `service_account_token`
        in `kaptain_warden.testing.stack`), checked by the API server like any other, so the
        request carries the token's real user info. `user` only names the kubeconfig entry.
        """
        return self._write_kubeconfig_file(path, user, {"token": token}, namespace=namespace)

    @property
    def url(self) -> str:
        """The API server's base URL, `https://127.0.0.1:<port>`."""
        if not self._apiserver_port:
            raise ControlPlaneError("the control plane has not been started")
        return f"https://127.0.0.1:{self._apiserver_port}"

    @property
    def etcd_url(self) -> str:
        """etcd's client URL (plain HTTP on loopback)."""
        if not self._etcd_port:
            raise ControlPlaneError("the control plane has not been started")
        return f"http://127.0.0.1:{self._etcd_port}"

    @property
    def work_dir(self) -> Path:
        """The temporary directory: certificates, kubeconfigs, logs, etcd data."""
        return self._path("")

    @property
    def kubeconfig_path(self) -> Path:
        """A kubeconfig for the admin identity (CN=admin, O=system:masters), data embedded."""
        return self._path("kubeconfig")

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate (PEM) to verify the API server with."""
        return self.ca.cert_pem

    @property
    def ca_cert_path(self) -> Path:
        """File holding `ca_pem`."""
        return self._path("ca.crt")

    @property
    def admin_cert_path(self) -> Path:
        """The admin client certificate (PEM)."""
        return self._path("admin.crt")

    @property
    def admin_key_path(self) -> Path:
        """The admin client key (PEM, PKCS#8)."""
        return self._path("admin.key")

    @property
    def service_account_public_key_path(self) -> Path:
        """The key the API server verifies service-account tokens with."""
        return self._path("sa.pub")

    @property
    def service_account_private_key_path(self) -> Path:
        """The key service-account tokens are signed with."""
        return self._path("sa.key")

    @property
    def binaries(self) -> Binaries:
        """The executables in use."""
        if self._binaries is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._binaries

    @property
    def kubectl_path(self) -> Path:
        """The kubectl executable (same version as the API server)."""
        return self.binaries.kubectl

    @property
    def processes(self) -> tuple[ManagedProcess, ...]:
        """The started processes, in start order."""
        return tuple(self._processes)

    @property
    def pids(self) -> dict[str, int]:
        """Process ids by component name, including the cleanup watchdog."""
        pids = {process.name: process.pid for process in self._processes if process.started}
        if self._watchdog is not None:
            pids["watchdog"] = self._watchdog.pid
        return pids

    def log_path(self, component: str) -> Path:
        """The log file of `component` (etcd, kube-apiserver, kube-controller-manager)."""
        return self._path(f"{component}.log")

    def ssl_context(self, *, client_certificate: bool = True) -> ssl.SSLContext:
        """A TLS client context that trusts only our CA (and presents the admin certificate)."""
        context = ssl.create_default_context(cafile=str(self.ca_cert_path))
        if client_certificate:
            context.load_cert_chain(str(self.admin_cert_path), str(self.admin_key_path))
        return context

    def client_configuration(self) -> k8s.Configuration:
        """A `kubernetes.client.Configuration` for the admin identity."""
        configuration = k8s.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca_cert_path)
        configuration.cert_file = str(self.admin_cert_path)
        configuration.key_file = str(self.admin_key_path)
        configuration.verify_ssl = True
        return configuration

    def api_client(self) -> k8s.ApiClient:
        """A new `kubernetes.client.ApiClient` for the admin identity (close it when done)."""
        return k8s.ApiClient(self.client_configuration())

    def impersonating_api_client(self, user: str, groups: Iterable[str] = ()) -> k8s.ApiClient:
        """A new ApiClient whose requests impersonate `user` in `groups`.

        The admin identity (allowed to impersonate anyone) sends `Impersonate-User` and one
        `Impersonate-Group` header per group; the API server then authorizes the request as that
        user. Note: impersonating with no group gives the user only `system:authenticated`.
        """
        api_client = k8s.ApiClient(self.client_configuration())
        api_client.default_headers["Impersonate-User"] = user
        group_list = list(groups)
        if group_list:
            rest_client = api_client.rest_client
            # A duck-typed stand-in: the REST client only calls `request` on it.
            rest_client.pool_manager = _ImpersonatingPoolManager(  # type: ignore[assignment]
                rest_client.pool_manager, group_list
            )
        return api_client

    # -- kubectl -----------------------------------------------------------------------------

    def kubectl_args(self, *args: str) -> list[str]:
        """`[kubectl, --kubeconfig=<admin kubeconfig>, *args]`."""
        return [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig_path}", *args]

    def kubectl_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default: os.environ) with KUBECONFIG pointing at the admin kubeconfig."""
        env = dict(os.environ if base is None else base)
        env["KUBECONFIG"] = str(self.kubeconfig_path)
        return env

    def run_kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane as admin; output captured as text.

        Raises:
            ControlPlaneError: when `check` and kubectl fails, with its stderr.
        """
        result = subprocess.run(
            self.kubectl_args(*args),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.kubectl_env(),
            check=False,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} exited with code {result.returncode}: "
                f"{result.stderr.strip()}"
            )
        return result

    # -- CRDs --------------------------------------------------------------------------------

    def install_crds(
        self, *, crd_dir: Path | Iterable[Path] | None = None, timeout: float = 60.0
    ) -> list[str]:
        """`install_crds` with an admin client for this control plane."""
        with self.api_client() as api_client:
            return install_crds(api_client, crd_dir=crd_dir, timeout=timeout)
