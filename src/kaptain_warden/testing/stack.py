"""The warden's admission server running against a ControlPlane, registered through the
generated webhook configurations: what tier-3 tests and `kaptain-warden up` both stand on.

    with ControlPlane(crds=True) as plane, WardenStack(plane) as stack:
        ...  # objects created through plane's API server are now stamped and validated
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import os
import shutil
import signal
import ssl
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from kubernetes import client as k8s

from kaptain_warden.certs.pki import build_ca, build_certificate
from kaptain_warden.install.webhook_configurations import (
    FailurePolicy,
    WebhookClient,
    webhook_configurations,
)
from kaptain_warden.kube.client import get_json, request_json
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.policies.model import Policy
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.errors import ControlPlaneError
from kaptain_warden.testing.processes import ManagedProcess, free_ports

PROBE_NAMESPACE = "warden-probe"
_ADMISSION_REGISTRATION = "/apis/admissionregistration.k8s.io/v1/"
_PLURALS = {
    "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
    "ValidatingWebhookConfiguration": "validatingwebhookconfigurations",
}
NOTEBOOK_SERVICE_ACCOUNT = "default-editor"


def notebook_user(namespace: str) -> str:
    """The identity a Kubeflow notebook in `namespace` acts as."""
    return f"system:serviceaccount:{namespace}:{NOTEBOOK_SERVICE_ACCOUNT}"


def _create(api_client: k8s.ApiClient, path: str, body: dict[str, Any]) -> None:
    """POST `body`; an object that already exists is fine."""
    try:
        request_json(api_client, "POST", path, body=body)
    except ApiError as exc:
        if exc.status != 409:
            raise


def create_profile_namespace(api_client: k8s.ApiClient, namespace: str) -> None:
    """A namespace like a Kubeflow profile's, with its `default-editor` ServiceAccount, which
    may create what the SDK creates (Kubeflow binds it to the aggregated kubeflow-edit role; this
    grants the same kinds directly, so it works without the controller manager's role
    aggregation)."""
    _create(api_client, "/api/v1/namespaces", {"metadata": {"name": namespace}})
    _create(
        api_client,
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"metadata": {"name": NOTEBOOK_SERVICE_ACCOUNT}},
    )
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    _create(
        api_client,
        f"{rbac}/roles",
        {
            "metadata": {"name": "kaptain-sdk"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets", "configmaps", "pods", "serviceaccounts"],
                    "verbs": ["*"],
                },
                {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["*"]},
                {
                    "apiGroups": [
                        "kubeflow.org",
                        "serving.kubeflow.org",
                        "serving.kserve.io",
                        "serving.knative.dev",
                        "ray.io",
                        "sparkoperator.k8s.io",
                        "trainer.kubeflow.org",
                    ],
                    "resources": ["*"],
                    "verbs": ["*"],
                },
            ],
        },
    )
    _create(
        api_client,
        f"{rbac}/rolebindings",
        {
            "metadata": {"name": "kaptain-sdk"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "kaptain-sdk",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": NOTEBOOK_SERVICE_ACCOUNT, "namespace": namespace}
            ],
        },
    )
    _wait_until_allowed(api_client, notebook_user(namespace), namespace)


def service_account_token(
    api_client: k8s.ApiClient,
    namespace: str,
    name: str = NOTEBOOK_SERVICE_ACCOUNT,
    *,
    pod: str | None = None,
    expiration_seconds: int = 3600,
) -> str:
    """A token for ServiceAccount `namespace/name` from the TokenRequest API, as the kubelet
    gets one for a Pod's projected volume; bound to Pod `pod` (which must exist) when given,
    so requests made with it carry the Pod's name and uid in the user's extra info."""
    spec: dict[str, Any] = {"expirationSeconds": expiration_seconds}
    if pod is not None:
        uid = get_json(api_client, f"/api/v1/namespaces/{namespace}/pods/{pod}")["metadata"]["uid"]
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": uid}
    review = request_json(
        api_client,
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    )
    token: str = review["status"]["token"]
    return token


def _wait_until_allowed(
    api_client: k8s.ApiClient, user: str, namespace: str, timeout: float = 10.0
) -> None:
    """Poll a SubjectAccessReview until `user` may create Secrets in `namespace`.

    The RBAC authorizer reads roles from an informer cache: a RoleBinding just created can
    still be unknown to it for a moment, and the first request would get a 403.
    """
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            "resourceAttributes": {"namespace": namespace, "verb": "create", "resource": "secrets"},
        },
    }
    deadline = time.monotonic() + timeout
    path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    while not request_json(api_client, "POST", path, body=review)["status"].get("allowed"):
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"{user} was not allowed to create Secrets in {namespace}")
        time.sleep(0.05)


class WardenStack:
    """`kaptain-warden serve` on a loopback port, registered with `plane`'s API server.

    Args:
        plane: a started ControlPlane.
        policy_path: the policy file to serve (default: the built-in policy).
        failure_policy: of both webhook configurations.
        timeout_seconds: of both webhook configurations.
        name: of the webhook configuration objects.
        log_format: the server's log format.
    """

    def __init__(
        self,
        plane: ControlPlane,
        *,
        policy_path: Path | None = None,
        failure_policy: FailurePolicy = "Fail",
        timeout_seconds: int = 5,
        name: str = "kaptain-warden",
        log_format: str = "json",
    ) -> None:
        self.plane = plane
        self.policy_path = policy_path
        self.policy: Policy = load_policy(policy_path)
        self.failure_policy: FailurePolicy = failure_policy
        self.timeout_seconds = timeout_seconds
        self.name = name
        self.log_format = log_format
        self.port = 0
        self.work_dir = Path(tempfile.mkdtemp(prefix="kaptain-warden-stack-"))
        self._server: ManagedProcess | None = None
        atexit.register(self.stop)

    def __enter__(self) -> WardenStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The admission server's base URL."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_path(self) -> Path:
        """The CA bundle that signed the server's certificate."""
        return self.work_dir / "ca.crt"

    @property
    def log_path(self) -> Path:
        """The admission server's log file."""
        return self.work_dir / "serve.log"

    def start(self) -> WardenStack:
        """Write certificates, start the server, register the webhooks, wait until they act."""
        now = dt.datetime.now(dt.UTC)
        ca = build_ca(common_name="kaptain-warden-test-ca", now=now, valid_for=dt.timedelta(days=1))
        serving = build_certificate(
            ca=ca,
            common_name="kaptain-warden",
            dns_names=("localhost",),
            ip_addresses=("127.0.0.1",),
            now=now,
            valid_for=dt.timedelta(days=1),
        )
        self.ca_path.write_bytes(ca.cert_pem)
        (self.work_dir / "tls.crt").write_bytes(serving.cert_pem)
        (self.work_dir / "tls.key").write_bytes(serving.key_pem)
        (self.port,) = free_ports(1)
        self.start_server()
        self.register()
        self.wait_until_effective()
        return self

    def start_server(self) -> None:
        """Start (or restart) the admission server process and wait for /readyz."""
        argv = [
            sys.executable,
            "-m",
            "kaptain_warden.cli",
            "serve",
            "--host=127.0.0.1",
            f"--port={self.port}",
            f"--tls-cert-file={self.work_dir / 'tls.crt'}",
            f"--tls-private-key-file={self.work_dir / 'tls.key'}",
            f"--kubeconfig={self.plane.kubeconfig_path}",
            f"--log-format={self.log_format}",
            "--workers=2",
        ]
        if self.policy_path is not None:
            argv.append(f"--policy={self.policy_path}")
        self._server = ManagedProcess("kaptain-warden-serve", argv, self.log_path)
        self._server.start()
        context = ssl.create_default_context(cafile=str(self.ca_path))
        deadline = time.monotonic() + 30
        while True:
            if self._server.poll() is not None:
                raise self._server.failure("before becoming ready")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/readyz", context=context, timeout=2),
            ):
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    "kaptain-warden serve was not ready within 30 s; "
                    f"log:\n{self._server.log_tail()}"
                )
            time.sleep(0.1)

    def stop_server(self) -> None:
        """Stop the admission server (SIGTERM, then SIGKILL), leaving the webhooks registered."""
        if self._server is not None:
            self._server.stop(timeout=15)
            self._server = None

    def kill_server(self) -> int:
        """SIGKILL the admission server's whole process group (the arbiter and its workers at
        once, as when its container dies), leaving the webhooks registered; returns the
        arbiter's pid. Nothing of the server's own cleanup runs."""
        assert self._server is not None, "the server is not running"
        pid = self._server.pid
        os.killpg(pid, signal.SIGKILL)
        self._server.stop(timeout=15)  # reaps it
        self._server = None
        return pid

    def configurations(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The (mutating, validating) configurations this stack registers."""
        return webhook_configurations(
            policy=self.policy,
            client=WebhookClient(url=self.url),
            ca_bundle=self.ca_path.read_bytes(),
            name=self.name,
            failure_policy=self.failure_policy,
            timeout_seconds=self.timeout_seconds,
        )

    def register(self, failure_policy: FailurePolicy | None = None) -> None:
        """Create or replace both webhook configurations."""
        if failure_policy is not None:
            self.failure_policy = failure_policy
        with self.plane.api_client() as api_client:
            for body in self.configurations():
                collection = _ADMISSION_REGISTRATION + _PLURALS[body["kind"]]
                try:
                    request_json(api_client, "POST", collection, body=body)
                except ApiError as exc:
                    if exc.status != 409:
                        raise
                    current = get_json(api_client, f"{collection}/{self.name}")
                    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                    request_json(api_client, "PUT", f"{collection}/{self.name}", body=body)

    def unregister(self) -> None:
        """Delete both webhook configurations (absent ones are fine)."""
        with self.plane.api_client() as api_client:
            for plural in _PLURALS.values():
                with contextlib.suppress(ApiError):
                    request_json(
                        api_client, "DELETE", f"{_ADMISSION_REGISTRATION}{plural}/{self.name}"
                    )

    def wait_until_effective(self, timeout: float = 30.0) -> None:
        """Probe with dry-run creates until the API server calls both webhooks.

        Webhook configurations take effect a few seconds after they are created: a stamped
        dry-run Secret proves the mutating one, a denied unusable `ttl` the validating one.
        """
        with self.plane.api_client() as admin:
            create_profile_namespace(admin, PROBE_NAMESPACE)
        user = notebook_user(PROBE_NAMESPACE)
        keys = self.policy.keys
        deadline = time.monotonic() + timeout
        secrets = f"/api/v1/namespaces/{PROBE_NAMESPACE}/secrets"
        dry_run = [("dryRun", "All")]
        with self.plane.impersonating_api_client(user) as api_client:
            while True:
                name = f"probe-{uuid.uuid4().hex[:8]}"
                stamped = refused = False
                with contextlib.suppress(ApiError):
                    secret = request_json(
                        api_client,
                        "POST",
                        secrets,
                        query=dry_run,
                        body={"metadata": {"name": name}},
                    )
                    stamped = keys.managed in (secret["metadata"].get("labels") or {})
                # Only the validating webhook refuses a value the mutator leaves as sent.
                unusable = {"metadata": {"name": name, "annotations": {keys.ttl: "probe"}}}
                try:
                    request_json(api_client, "POST", secrets, query=dry_run, body=unusable)
                except ApiError as exc:
                    refused = exc.status == 403 and keys.ttl in exc.message
                if stamped and refused:
                    return
                if time.monotonic() > deadline:
                    raise ControlPlaneError(
                        f"the webhooks did not take effect within {timeout:.0f} s "
                        f"(stamped={stamped}, unusable ttl denied={refused})"
                    )
                time.sleep(0.2)

    def stop(self) -> None:
        """Unregister the webhooks (while the API server still runs), stop the server, and
        remove the certificates and logs. Safe to call twice."""
        if self.plane.running:
            with contextlib.suppress(Exception):
                self.unregister()
        self.stop_server()
        shutil.rmtree(self.work_dir, ignore_errors=True)
