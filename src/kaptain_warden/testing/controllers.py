"""The real KServe, Knative Serving and training-operator controllers, run out-of-cluster.

`RealControllers` starts KServe's manager, Knative Serving's controller and the training-operator
against a running `ControlPlane` (start it with `crds=default_crd_files(upstream,
controllers=True)` and a controller manager, whose garbage collector then knows every kind from
the beginning). Each controller authenticates with a client certificate as the ServiceAccount it
runs as in a cluster (`KSERVE_USER`, `KNATIVE_USER`, `TRAINING_OPERATOR_USER`), which a
ClusterRoleBinding makes cluster-admin: the warden sees exactly the identity it sees in a cluster,
never a privileged group.

What each needs besides its CRDs (all taken from the upstream files `hack/upstream.tsv` names,
at run time; only images are filled in, since these Pods never run: there is no kubelet):
- KServe: the `kserve/inferenceservice-config` ConfigMap, a ClusterServingRuntime for sklearn,
  serving certificates under `$TMPDIR/k8s-webhook-server/serving-certs`, and its own
  InferenceService webhooks registered (its defaulter turns `predictor.sklearn` into the model
  format the Knative Service's container is built from).
- Knative Serving: the `knative-serving` ConfigMaps, with a queue-proxy image and the example
  registry in `registries-skipping-tag-resolving` (it would otherwise resolve tags over the
  network). Its probe port 8080 is fixed on every interface: one instance per machine at a time.
- The training-operator: its certificate rotator waits for the Secret
  `kubeflow/training-operator-webhook-cert` and the ValidatingWebhookConfiguration
  `validator.training-operator.kubeflow.org`, and for the certificate files in the fixed
  directory `/tmp/k8s-webhook-server/serving-certs` (a kubelet would mount them from the Secret;
  here they are copied from it, and removed on stop). Its webhook is not registered.

Binaries are found envtest-style: `TEST_ASSET_KSERVE_MANAGER`,
`TEST_ASSET_KNATIVE_SERVING_CONTROLLER` and `TEST_ASSET_TRAINING_OPERATOR`, else
`hack/test-assets --component <name>` (which builds them from the Go module proxy, once).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.client
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from kubernetes import client as k8s

from kaptain_warden.certs.pki import CertKeyPair, build_ca, build_certificate
from kaptain_warden.kube.client import get_json, request_json
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.testing.assets import (
    AssetsNotFoundError,
    find_test_assets_script,
    run_test_assets,
)
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.errors import ControlPlaneError
from kaptain_warden.testing.processes import ManagedProcess, free_ports
from kaptain_warden.testing.upstream import UpstreamManifests, load_yaml_documents

__all__ = [
    "KNATIVE_USER",
    "KSERVE_USER",
    "TRAINING_OPERATOR_USER",
    "ControllerBinaries",
    "ControllersNotFoundError",
    "RealControllers",
    "find_controller_binaries",
]

KSERVE_USER: Final = "system:serviceaccount:kserve:kserve-controller-manager"
KNATIVE_USER: Final = "system:serviceaccount:knative-serving:controller"
TRAINING_OPERATOR_USER: Final = "system:serviceaccount:kubeflow:training-operator"
#: Images of Pods that never run (no kubelet); Knative must not resolve them over the network.
IMAGE_REGISTRY: Final = "registry.example"

_KSERVE: Final = "github.com/kserve/kserve"
_KNATIVE_SERVING: Final = "knative.dev/serving"
_KNATIVE_NETWORKING: Final = "knative.dev/networking"
_TRAINING_OPERATOR_CERT_DIR: Final = Path("/tmp/k8s-webhook-server/serving-certs")
_TRAINING_OPERATOR_SECRET: Final = "training-operator-webhook-cert"
_TRAINING_OPERATOR_WEBHOOK: Final = "validator.training-operator.kubeflow.org"
#: Knative's reconcilers whose leader-election Leases show the controller is working.
_KNATIVE_RECONCILERS: Final = ("service", "configuration", "route", "revision", "labeler")
_POLL: Final = 0.1
_CERT_VALIDITY: Final = dt.timedelta(days=1)


class ControllersNotFoundError(AssetsNotFoundError):
    """A controller binary is neither configured nor obtainable with hack/test-assets."""


@dataclass(frozen=True)
class ControllerBinaries:
    """Absolute paths of the controller executables."""

    kserve_manager: Path
    knative_serving_controller: Path
    training_operator: Path


# field -> (hack/test-assets component, file in its directory, envtest-style variable)
_BINARIES: Final = {
    "kserve_manager": ("kserve", "kserve-manager", "TEST_ASSET_KSERVE_MANAGER"),
    "knative_serving_controller": (
        "knative-serving",
        "knative-serving-controller",
        "TEST_ASSET_KNATIVE_SERVING_CONTROLLER",
    ),
    "training_operator": ("training-operator", "training-operator", "TEST_ASSET_TRAINING_OPERATOR"),
}


def find_controller_binaries(
    *, environ: Mapping[str, str] | None = None, run_script: bool = True
) -> ControllerBinaries:
    """Each binary from its `TEST_ASSET_*` variable, else from `hack/test-assets --component`."""
    env = os.environ if environ is None else environ
    found: dict[str, Path] = {}
    for field, (component, file, variable) in _BINARIES.items():
        explicit = env.get(variable, "").strip()
        if explicit:
            path = Path(explicit).expanduser().resolve()
        else:
            script = find_test_assets_script() if run_script else None
            if script is None:
                raise ControllersNotFoundError(
                    f"{variable} is not set, and no hack/test-assets is at hand. Run "
                    f"`hack/test-assets --component {component}` in a kaptain-warden checkout "
                    f"(it builds it from the Go module proxy, once) and set {variable} to "
                    f"<the printed directory>/{file}."
                )
            path = run_test_assets(script, "--component", component, environ=env) / file
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ControllersNotFoundError(f"{path} ({variable}) is not an executable file")
        found[field] = path
    return ControllerBinaries(**found)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class RealControllers:
    """KServe, Knative Serving and the training-operator, against a running `plane`.

    Args:
        plane: a started ControlPlane with the controllers' CRDs and a garbage collector.
        upstream: where the upstream ConfigMaps, runtimes and webhooks are read from.
        binaries: default `find_controller_binaries()` (which may build them: not timed).
        start_timeout: seconds the three may take, together, to be ready.
    """

    def __init__(
        self,
        plane: ControlPlane,
        upstream: UpstreamManifests,
        *,
        binaries: ControllerBinaries | None = None,
        start_timeout: float = 180.0,
    ) -> None:
        self.plane = plane
        self.upstream = upstream
        self._binaries = binaries
        self._start_timeout = start_timeout
        self._processes: dict[str, ManagedProcess] = {}
        self._work_dir = Path(tempfile.mkdtemp(prefix="kaptain-warden-controllers-"))
        self._wrote_training_certs = False
        self.startup_seconds: float | None = None

    def __enter__(self) -> RealControllers:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def binaries(self) -> ControllerBinaries:
        """The executables in use (found on first use)."""
        if self._binaries is None:
            self._binaries = find_controller_binaries()
        return self._binaries

    def log_tail(self, name: str) -> str:
        """The last lines of `name`'s log (kserve, knative-serving, training-operator)."""
        return self._processes[name].log_tail()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> RealControllers:
        """Create what they read, start the three, and wait until each is at work."""
        binaries = self.binaries
        began = time.monotonic()
        try:
            with self.plane.api_client() as admin:
                self._prepare_cluster(admin)
                kserve_ports = free_ports(3)
                training_ports = free_ports(3)
                kserve_ca = self._start_kserve(binaries.kserve_manager, kserve_ports)
                self._start_knative(binaries.knative_serving_controller)
                self._start_training_operator(binaries.training_operator, training_ports)
                deadline = time.monotonic() + self._start_timeout
                self._wait(
                    deadline, "kserve", "serve its webhooks", lambda: _listening(kserve_ports[2])
                )
                self._register_kserve_webhooks(admin, kserve_ca, kserve_ports[2])
                self._wait(
                    deadline,
                    "training-operator",
                    "fill its certificate Secret",
                    lambda: self._training_certs_written(admin),
                )
                self._wait(
                    deadline,
                    "training-operator",
                    "become ready",
                    lambda: _http_ok(training_ports[1], "/readyz"),
                )
                self._wait(
                    deadline, "kserve", "become ready", lambda: _http_ok(kserve_ports[1], "/readyz")
                )
                self._wait(
                    deadline,
                    "knative-serving",
                    "lead its reconcilers",
                    lambda: self._knative_leading(admin),
                )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop the controllers and remove their files (certificates included)."""
        for process in reversed(list(self._processes.values())):
            with contextlib.suppress(Exception):
                process.stop(10.0)
        self._processes.clear()
        if self._wrote_training_certs:
            shutil.rmtree(_TRAINING_OPERATOR_CERT_DIR.parent, ignore_errors=True)
            self._wrote_training_certs = False
        shutil.rmtree(self._work_dir, ignore_errors=True)

    def check(self) -> None:
        """Raise ControlPlaneError when a controller has exited."""
        for process in self._processes.values():
            if process.poll() is not None:
                raise process.failure("while the controllers were in use")

    def _wait(self, deadline: float, name: str, what: str, ready: Callable[[], bool]) -> None:
        while not ready():
            self.check()
            self.plane.check()
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{name} did not {what} within {self._start_timeout:.0f}s; last lines of "
                    f"its log:\n{self._processes[name].log_tail()}"
                )
            time.sleep(_POLL)

    # -- cluster objects ---------------------------------------------------------------------

    def _prepare_cluster(self, admin: k8s.ApiClient) -> None:
        for namespace in ("kserve", "knative-serving", "kubeflow"):
            _apply(
                admin, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
        for user in (KSERVE_USER, KNATIVE_USER, TRAINING_OPERATOR_USER):
            _apply(
                admin,
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": "real-controller:" + user.rsplit(":", 1)[-1]},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "cluster-admin",
                    },
                    "subjects": [
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                    ],
                },
            )
        for document in self._documents(_KSERVE, "config/configmap/inferenceservice.yaml"):
            _apply(admin, document)
        for document in self._documents(_KSERVE, "config/runtimes/kserve-sklearnserver.yaml"):
            for container in document["spec"]["containers"]:
                container["image"] = f"{IMAGE_REGISTRY}/kserve/sklearnserver:v0.20.0"
            _apply(admin, document)
        configmaps = self.upstream.file(_KNATIVE_SERVING, "config/core/configmaps")
        for path in sorted(configmaps.glob("*.yaml")):
            for document in load_yaml_documents(path):
                if document and document["metadata"]["name"] == "config-deployment":
                    document["data"]["queue-sidecar-image"] = f"{IMAGE_REGISTRY}/knative/queue:v1"
                    document["data"]["registries-skipping-tag-resolving"] = IMAGE_REGISTRY
                if document:
                    _apply(admin, document)
        for document in self._documents(_KNATIVE_NETWORKING, "config/config-network.yaml"):
            _apply(admin, document)
        _apply(
            admin,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": _TRAINING_OPERATOR_SECRET, "namespace": "kubeflow"},
            },
        )
        _apply(
            admin,
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": _TRAINING_OPERATOR_WEBHOOK},
                "webhooks": [],
            },
        )

    def _documents(self, module: str, path: str) -> list[dict[str, Any]]:
        return [doc for doc in load_yaml_documents(self.upstream.file(module, path)) if doc]

    def _kubeconfig(self, user: str) -> Path:
        namespace = user.split(":")[2]
        return self.plane.write_kubeconfig(
            self._work_dir / f"{namespace}.kubeconfig",
            user=user,
            groups=("system:serviceaccounts", f"system:serviceaccounts:{namespace}"),
        )

    def _env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("KUBE")}
        env.update(extra)
        return env

    # -- KServe ------------------------------------------------------------------------------

    def _start_kserve(self, binary: Path, ports: list[int]) -> CertKeyPair:
        metrics, health, webhook = ports
        tmp = self._work_dir / "kserve-tmp"
        ca = build_ca(common_name="kserve webhook CA", now=_now(), valid_for=_CERT_VALIDITY)
        serving = build_certificate(
            ca=ca,
            common_name="kserve-webhook-server-service",
            now=_now(),
            valid_for=_CERT_VALIDITY,
            dns_names=("localhost",),
            ip_addresses=("127.0.0.1",),
        )
        certs = tmp / "k8s-webhook-server" / "serving-certs"
        _write(certs / "tls.crt", serving.cert_pem)
        _write(certs / "tls.key", serving.key_pem)
        self._processes["kserve"] = self.plane.start_process(
            "kserve",
            [
                str(binary),
                f"--metrics-addr=127.0.0.1:{metrics}",
                f"--health-probe-addr=127.0.0.1:{health}",
                f"--webhook-port={webhook}",
                "--leader-elect=false",
            ],
            env=self._env(
                KUBECONFIG=str(self._kubeconfig(KSERVE_USER)),
                POD_NAMESPACE="kserve",
                TMPDIR=str(tmp),
            ),
        )
        return ca

    def _register_kserve_webhooks(self, admin: k8s.ApiClient, ca: CertKeyPair, port: int) -> None:
        """KServe's own InferenceService webhook configurations, as its release ships them
        (config/webhook/manifests.yaml), aimed at the local manager instead of its Service."""
        bundle = base64.b64encode(ca.cert_pem).decode()
        for document in self._documents(_KSERVE, "config/webhook/manifests.yaml"):
            if document["metadata"]["name"] != "inferenceservice.serving.kserve.io":
                continue
            document["metadata"] = {"name": document["metadata"]["name"]}
            for webhook in document["webhooks"]:
                path = webhook["clientConfig"]["service"]["path"]
                webhook["clientConfig"] = {
                    "url": f"https://127.0.0.1:{port}{path}",
                    "caBundle": bundle,
                }
            _apply(admin, document)

    # -- Knative Serving ---------------------------------------------------------------------

    def _start_knative(self, binary: Path) -> None:
        kubeconfig = self._kubeconfig(KNATIVE_USER)
        self._processes["knative-serving"] = self.plane.start_process(
            "knative-serving",
            [str(binary), f"--kubeconfig={kubeconfig}"],
            env=self._env(SYSTEM_NAMESPACE="knative-serving", POD_NAME="controller-local"),
        )

    def _knative_leading(self, admin: k8s.ApiClient) -> bool:
        leases = get_json(admin, "/apis/coordination.k8s.io/v1/namespaces/knative-serving/leases")
        held = [
            lease["metadata"]["name"]
            for lease in leases.get("items", [])
            if (lease.get("spec") or {}).get("holderIdentity")
        ]
        return all(
            any(f".{reconciler}." in name for name in held) for reconciler in _KNATIVE_RECONCILERS
        )

    # -- training-operator -------------------------------------------------------------------

    def _start_training_operator(self, binary: Path, ports: list[int]) -> None:
        metrics, health, webhook = ports
        self._processes["training-operator"] = self.plane.start_process(
            "training-operator",
            [
                str(binary),
                "--enable-scheme=tfjob",
                "--enable-scheme=pytorchjob",
                f"--metrics-bind-address=127.0.0.1:{metrics}",
                f"--health-probe-bind-address=127.0.0.1:{health}",
                f"--webhook-server-port={webhook}",
            ],
            env=self._env(
                KUBECONFIG=str(self._kubeconfig(TRAINING_OPERATOR_USER)),
                MY_POD_NAMESPACE="kubeflow",
                # Its webhook server reads $TMPDIR/k8s-webhook-server/serving-certs, its
                # certificate rotator the fixed /tmp one: they must be the same directory.
                TMPDIR=str(_TRAINING_OPERATOR_CERT_DIR.parents[1]),
            ),
        )

    def _training_certs_written(self, admin: k8s.ApiClient) -> bool:
        """Copy the certificates its rotator put in the Secret where a kubelet would mount them."""
        secret = get_json(admin, f"/api/v1/namespaces/kubeflow/secrets/{_TRAINING_OPERATOR_SECRET}")
        data = secret.get("data") or {}
        if not data.get("tls.crt") or not data.get("tls.key"):
            return False
        for key, value in data.items():
            _write(_TRAINING_OPERATOR_CERT_DIR / key, base64.b64decode(value))
        self._wrote_training_certs = True
        return True


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _http_ok(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _apply(admin: k8s.ApiClient, document: Mapping[str, Any]) -> None:
    """Create `document` (as admin); replace it when it exists."""
    path = _collection_path(document)
    try:
        request_json(admin, "POST", path, body=dict(document))
    except ApiError as error:
        if error.status != 409:
            raise ControlPlaneError(
                f"creating {document['kind']} {document['metadata']['name']} failed: {error}"
            ) from error
        name = document["metadata"]["name"]
        existing = get_json(admin, f"{path}/{name}")
        replacement = {**document, "metadata": {**document["metadata"]}}
        replacement["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        request_json(admin, "PUT", f"{path}/{name}", body=replacement)


_CORE_PLURALS: Final = {"Namespace": "namespaces", "ConfigMap": "configmaps", "Secret": "secrets"}
_GROUP_PLURALS: Final = {
    "ClusterRoleBinding": "clusterrolebindings",
    "ValidatingWebhookConfiguration": "validatingwebhookconfigurations",
    "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
    "ClusterServingRuntime": "clusterservingruntimes",
}


def _collection_path(document: Mapping[str, Any]) -> str:
    kind = document["kind"]
    api_version = document["apiVersion"]
    namespace = document["metadata"].get("namespace")
    if kind in _CORE_PLURALS:
        base = "/api/v1"
        plural = _CORE_PLURALS[kind]
    else:
        base = f"/apis/{api_version}"
        plural = _GROUP_PLURALS[kind]
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
