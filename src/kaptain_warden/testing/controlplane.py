"""A local Kubernetes control plane for tier-3 tests, run the way controller-runtime's envtest does.

`ControlPlane` starts etcd and kube-apiserver (and, when asked, kube-controller-manager for the
garbage collector, Job and TTL-after-finished controllers) on free loopback ports, with
certificates from `credentials` (one CA signs the API server's serving certificate and the
client certificates; the admin identity is CN=admin, O=system:masters).

Every process runs in its own process group and logs to a file in a temporary directory. `stop()`
sends SIGTERM, then SIGKILL after a timeout, and removes the directory. Two backstops make sure
no process outlives the Python process that started it: an `atexit` handler, and a small
watchdog process that kills the process groups and removes the directory when its pipe from the
parent closes (which also happens when the parent is killed with SIGKILL).

Binaries are found like envtest finds them (`binaries`); processes and the watchdog are
`processes`; CRDs are installed by `crds`; impersonating clients come from `impersonation`.

    with ControlPlane(controller_manager=True, crds=True) as cp:
        core = kubernetes.client.CoreV1Api(cp.api_client())
        alice = kubernetes.client.CoreV1Api(cp.impersonating_api_client("alice", ["team-a"]))
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

from kubernetes import client as k8s

from kaptain_warden.certs.pki import CertKeyPair
from kaptain_warden.testing.assets import AssetsNotFoundError
from kaptain_warden.testing.binaries import Binaries, BinariesNotFoundError, find_binaries
from kaptain_warden.testing.components import (
    answers_ok,
    apiserver_argv,
    controller_manager_argv,
    etcd_argv,
    http_get,
)
from kaptain_warden.testing.crds import install_crds
from kaptain_warden.testing.credentials import (
    certificate_credentials,
    issue_client_certificate,
    issue_serving_certificate,
    write_control_plane_pki,
    write_file,
    write_kubeconfig,
)
from kaptain_warden.testing.errors import ControlPlaneError, PortTakenError
from kaptain_warden.testing.impersonation import impersonating_api_client
from kaptain_warden.testing.processes import ManagedProcess, Watchdog, free_ports
from kaptain_warden.testing.upstream import default_crd_files, find_upstream

__all__ = ["DEFAULT_CONTROLLERS", "ControlPlane"]

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

_POLL_INTERVAL: Final = 0.05
_START_ATTEMPTS: Final = 3


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
        self._watchdog: Watchdog | None = None
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
            self._watchdog = Watchdog()
            self._work_dir = Path(tempfile.mkdtemp(prefix="kaptain-warden-controlplane-"))
            self._watchdog.watch_dir(self._work_dir)
            for attempt in range(1, _START_ATTEMPTS + 1):
                try:
                    self._start_components()
                    break
                except PortTakenError:
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
        self._ca, admin = write_control_plane_pki(self._path(""))
        self._write_kubeconfig_file(
            self._path("kubeconfig"), "admin", certificate_credentials(admin)
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
                        raise PortTakenError(started.failure("on a port taken meanwhile"))
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
        argv = etcd_argv(
            self._binaries.etcd, self._path(""), client_port=self._etcd_port, peer_port=peer_port
        )
        process = self._start_process("etcd", argv)
        self._wait_for(
            process,
            f"become healthy (GET {self.etcd_url}/health)",
            lambda: answers_ok("127.0.0.1", self._etcd_port, "/health", None),
        )

    def _start_apiserver(self) -> None:
        assert self._binaries is not None
        port = self._apiserver_port
        argv = apiserver_argv(
            self._binaries.kube_apiserver,
            self._path(""),
            port=port,
            etcd_port=self._etcd_port,
            extra=self._extra_apiserver_args,
        )
        process = self._start_process("kube-apiserver", argv)
        context = self.ssl_context(client_certificate=True)
        self._wait_for(
            process,
            f"become ready (GET {self.url}/readyz)",
            lambda: answers_ok("127.0.0.1", port, "/readyz", context),
        )
        self._wait_for(
            process,
            "create namespace default",
            lambda: answers_ok("127.0.0.1", port, "/api/v1/namespaces/default", context),
        )

    def _start_controller_manager(self) -> None:
        assert self._binaries is not None
        assert self._binaries.kube_controller_manager is not None
        identity = self.issue_client_certificate(
            "system:kube-controller-manager", ("system:masters",)
        )
        kubeconfig = self._write_kubeconfig_file(
            self._path("controller-manager.kubeconfig"),
            "system:kube-controller-manager",
            certificate_credentials(identity),
        )
        serving = issue_serving_certificate(
            self.ca,
            "kube-controller-manager",
            dns_names=("localhost",),
            ip_addresses=("127.0.0.1",),
        )
        write_file(self._path("controller-manager.crt"), serving.cert_pem, 0o644)
        write_file(self._path("controller-manager.key"), serving.key_pem)
        port = self._controller_manager_port
        argv = controller_manager_argv(
            self._binaries.kube_controller_manager,
            self._path(""),
            kubeconfig=kubeconfig,
            port=port,
            controllers=self._controllers,
            extra=self._extra_controller_manager_args,
        )
        process = self._start_process("kube-controller-manager", argv)
        context = self.ssl_context(client_certificate=False)
        self._wait_for(
            process,
            f"become healthy (GET https://127.0.0.1:{port}/healthz)",
            lambda: answers_ok("127.0.0.1", port, "/healthz", context),
        )
        if _AGGREGATION_CONTROLLER in self._controllers:
            # So that a test may rely on `edit` at once.
            self._wait_for(process, "fill the aggregated ClusterRole edit", self._edit_role_filled)

    def _edit_role_filled(self) -> bool:
        path = "/apis/rbac.authorization.k8s.io/v1/clusterroles/edit"
        try:
            status, body = http_get(
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
        return issue_client_certificate(self.ca, user, groups)

    def _write_kubeconfig_file(
        self, path: Path, user: str, credentials: Mapping[str, str], *, namespace: str = "default"
    ) -> Path:
        return write_kubeconfig(
            path,
            server=self.url,
            ca_pem=self.ca.cert_pem,
            user=user,
            credentials=credentials,
            namespace=namespace,
        )

    def write_kubeconfig(self, path: Path, *, user: str, groups: Iterable[str] = ()) -> Path:
        """Write a kubeconfig that authenticates as `user` in `groups` with a client certificate.

        For running a program (the sweeper, kubectl) as some identity, e.g. a ServiceAccount:
        `user="system:serviceaccount:ns:name", groups=("system:serviceaccounts",
        "system:serviceaccounts:ns")`.
        """
        return self._write_kubeconfig_file(
            path, user, certificate_credentials(self.issue_client_certificate(user, groups))
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
        return impersonating_api_client(self.client_configuration(), user, groups)

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
