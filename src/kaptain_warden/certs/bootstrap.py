"""Self-managed TLS against the API server: the certificate Secret, the server's files, caBundle.

`CertificateManager.sync()` is one pass of the loop that `kaptain-warden certs bootstrap` runs
once (an init container: the server starts with valid files and a trusted CA) and
`kaptain-warden certs watch` runs every few seconds beside the server (a sidecar: renewals and
CA rotations, `rotation.next_step`, reach the files without a restart). A pass:

1. reads the certificate Secret; creates it when absent. Replicas starting together race
   here and agree on one CA: a create that loses gets 409 AlreadyExists, an update that loses
   gets 409 Conflict (stale `resourceVersion`), and the loser re-reads the winner's CA;
2. writes the bundle into both webhook configurations' `caBundle` unless they carry it (or a
   newer one: the bundle generation annotation keeps a replica with a stale view from writing
   an older bundle back);
3. applies at most one `next_step` per round to the Secret, with the same optimistic
   concurrency, and goes round again;
4. writes `tls.crt`, `tls.key` and `ca.crt` into the server's directory, all three swapped in
   at one instant (see `write_files`).

RBAC it needs: get/update (and create, when nothing pre-creates it) on the one Secret, by
name; get/patch on the two webhook configurations, by name.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from kaptain_warden.certs.rotation import (
    BUNDLE_GENERATION,
    CA_BUNDLE,
    TLS_CERT,
    TLS_KEY,
    Timings,
    TlsMaterial,
    next_step,
)
from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import resource_path
from kaptain_warden.kube.errors import ApiError

logger = logging.getLogger(__name__)

_ADMISSION_GROUP: Final = "admissionregistration.k8s.io"
_REQUEST_TIMEOUT: Final = 10.0
_MAX_ROUNDS: Final = 8
_DATA_LINK: Final = "..data"


class CertsError(RuntimeError):
    """The certificate Secret or the webhook configurations could not be brought up to date."""


@dataclass(frozen=True)
class CertsSettings:
    """Where the self-managed TLS material lives and who must trust it."""

    namespace: str
    """Namespace of the Secret and of the admission server's Service."""

    secret_name: str
    """The certificate Secret (created when absent; the Helm chart pre-creates it empty)."""

    service_name: str
    """The admission server's Service: its DNS names go into the serving certificate."""

    cert_dir: Path | None = None
    """Directory to write `tls.crt`, `tls.key` and `ca.crt` into. None: write no files."""

    cluster_domain: str = "cluster.local"
    """The cluster's DNS domain, for the fully qualified Service name."""

    extra_dns_names: tuple[str, ...] = ()
    """More names for the serving certificate."""

    mutating_webhook: str | None = None
    """MutatingWebhookConfiguration whose caBundle to keep current. None: none."""

    validating_webhook: str | None = None
    """ValidatingWebhookConfiguration whose caBundle to keep current. None: none."""

    timings: Timings = field(default_factory=Timings)
    """Certificate lifetimes and rotation waits."""

    @property
    def dns_names(self) -> tuple[str, ...]:
        """The Service's names, shortest first, as the API server may dial any of them."""
        service, namespace = self.service_name, self.namespace
        names = (
            f"{service}.{namespace}.svc",  # what the API server dials for a service reference
            service,
            f"{service}.{namespace}",
            f"{service}.{namespace}.svc.{self.cluster_domain}",
            *self.extra_dns_names,
        )
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class SyncResult:
    """What one pass found and did."""

    material: TlsMaterial
    changes: tuple[str, ...]
    published: bool
    files_written: bool


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CertificateManager:
    """Keeps the certificate Secret, the caBundles and the server's files in step."""

    def __init__(
        self,
        api: KubeApi,
        settings: CertsSettings,
        *,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self._api = api
        self._settings = settings
        self._clock = clock

    # -- the Secret ---------------------------------------------------------------------------

    def _secret_path(self, *, named: bool = True) -> str:
        return resource_path(
            group="",
            version="v1",
            resource="secrets",
            namespace=self._settings.namespace,
            name=self._settings.secret_name if named else None,
        )

    def _read_secret(self) -> dict[str, Any] | None:
        try:
            secret: dict[str, Any] = self._api.request(
                "GET", self._secret_path(), timeout=_REQUEST_TIMEOUT
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return secret

    def _store(self, secret: dict[str, Any] | None, material: TlsMaterial) -> None:
        """Create the Secret, or replace it at the `resourceVersion` read (409 when it moved)."""
        data, annotations = material.to_secret()
        encoded = {k: base64.b64encode(v).decode("ascii") for k, v in data.items()}
        if secret is None:
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": self._settings.secret_name,
                    "namespace": self._settings.namespace,
                    "annotations": annotations,
                },
                "type": "Opaque",
                "data": encoded,
            }
            self._api.request(
                "POST",
                self._secret_path(named=False),
                body=body,
                timeout=_REQUEST_TIMEOUT,
            )
            return
        # Keep everything else on the object (Helm's ownership labels and annotations).
        body = dict(secret)
        metadata = dict(body.get("metadata") or {})
        metadata["annotations"] = {**(metadata.get("annotations") or {}), **annotations}
        body["metadata"] = metadata
        body["data"] = encoded
        self._api.request("PUT", self._secret_path(), body=body, timeout=_REQUEST_TIMEOUT)

    # -- the webhook configurations ------------------------------------------------------------

    def _webhook_paths(self) -> list[str]:
        paths = []
        for resource, name in (
            ("mutatingwebhookconfigurations", self._settings.mutating_webhook),
            ("validatingwebhookconfigurations", self._settings.validating_webhook),
        ):
            if name:
                paths.append(
                    resource_path(
                        group=_ADMISSION_GROUP, version="v1", resource=resource, name=name
                    )
                )
        return paths

    @property
    def publishes(self) -> bool:
        """Whether this manager keeps any webhook configuration's caBundle current."""
        return bool(self._webhook_paths())

    def _publish(self, material: TlsMaterial) -> bool:
        """Bring both caBundles to `material.bundle`; True when both carry it now."""
        published = True
        for path in self._webhook_paths():
            published = self._publish_one(path, material) and published
        return published

    def _publish_one(self, path: str, material: TlsMaterial) -> bool:
        wanted = base64.b64encode(material.bundle_pem).decode("ascii")
        try:
            config = self._api.request("GET", path, timeout=_REQUEST_TIMEOUT)
        except ApiError as exc:
            if exc.status == 404:
                logger.warning("%s does not exist (yet): its caBundle cannot be set", path)
                return False
            raise
        webhooks = config.get("webhooks") or []
        if webhooks and all(
            (hook.get("clientConfig") or {}).get("caBundle") == wanted for hook in webhooks
        ):
            return True
        metadata = config.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        theirs = str(annotations.get(BUNDLE_GENERATION, "0"))
        if theirs.isdigit() and int(theirs) > material.generation:
            logger.info("%s carries a newer CA bundle than this replica read; leaving it", path)
            return False
        # JSON Patch with a `test` of the resourceVersion: the patch applies to exactly the
        # object read above, so two replicas cannot interleave an older bundle over a newer one.
        patch: list[dict[str, Any]] = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": metadata["resourceVersion"],
            }
        ]
        patch += [
            {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": wanted}
            for i in range(len(webhooks))
        ]
        generation = str(material.generation)
        if annotations:
            key = BUNDLE_GENERATION.replace("~", "~0").replace("/", "~1")
            patch.append({"op": "add", "path": f"/metadata/annotations/{key}", "value": generation})
        else:
            patch.append(
                {
                    "op": "add",
                    "path": "/metadata/annotations",
                    "value": {BUNDLE_GENERATION: generation},
                }
            )
        try:
            self._api.request(
                "PATCH",
                path,
                body=patch,
                content_type="application/json-patch+json",
                timeout=_REQUEST_TIMEOUT,
            )
        except ApiError as exc:
            if exc.status in (409, 422):  # the object moved since we read it: next pass
                logger.info("%s changed while its caBundle was being set; retrying later", path)
                return False
            raise
        logger.info("set the caBundle of %s (bundle generation %s)", path, generation)
        return True

    # -- one pass ------------------------------------------------------------------------------

    def sync(self) -> SyncResult:
        """Read, publish, plan and apply until nothing is left to do; then write the files.

        Raises:
            CertsError: when the Secret keeps moving under us for too many rounds.
            ApiError: for API errors other than the expected races.
        """
        changes: list[str] = []
        for _ in range(_MAX_ROUNDS):
            secret = self._read_secret()
            if secret is None:
                material = TlsMaterial()
            else:
                material = TlsMaterial.from_secret(
                    {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()},
                    (secret.get("metadata") or {}).get("annotations") or {},
                )
            published = bool(material.bundle) and self._publish(material)
            step = next_step(
                material,
                now=self._clock(),
                dns_names=self._settings.dns_names,
                timings=self._settings.timings,
                bundle_published=published,
            )
            if step is None:
                written = self.write_files(material)
                return SyncResult(material, tuple(changes), published, written)
            try:
                self._store(secret, step.material)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                logger.info("another replica changed the certificate Secret first; re-reading")
                continue
            logger.info(
                "certificate Secret %s/%s: %s",
                self._settings.namespace,
                self._settings.secret_name,
                step.reason,
            )
            changes.append(step.reason)
        raise CertsError(
            f"the certificate Secret {self._settings.namespace}/{self._settings.secret_name} "
            f"kept changing for {_MAX_ROUNDS} rounds"
        )

    # -- files ---------------------------------------------------------------------------------

    def write_files(self, material: TlsMaterial) -> bool:
        """Write the serving certificate, key and bundle; False when they were already there."""
        directory = self._settings.cert_dir
        if directory is None or material.serving is None:
            return False
        contents = {
            TLS_CERT: material.serving.cert_pem,
            TLS_KEY: material.serving.key_pem,
            CA_BUNDLE: material.bundle_pem,
        }
        return write_files(directory, contents)


def write_files(directory: Path, contents: Mapping[str, bytes]) -> bool:
    """Swap `contents` into `directory` at one instant; False when they are already there.

    The layout is kubelet's AtomicWriter's (what a Secret volume looks like): `<name>` is a
    symlink to `..data/<name>`, and `..data` is a symlink to a timestamped directory that is
    replaced by one `rename`, so no reader sees a half-written file. A reader that opens
    `tls.crt` and then `tls.key` may still fall between the two opens; that is harmless because
    renewals keep the key (`rotation._for_key`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    if all(_read(directory / name) == data for name, data in contents.items()):
        return False
    staged = Path(
        tempfile.mkdtemp(prefix=".." + time.strftime("%Y_%m_%d_%H_%M_%S."), dir=directory)
    )
    for name, data in contents.items():
        path = staged / name
        path.write_bytes(data)
        os.chmod(path, 0o644 if name != TLS_KEY else 0o600)
    os.chmod(staged, 0o755)
    link = directory / _DATA_LINK
    previous = link.resolve() if link.is_symlink() else None
    temporary_link = directory / "..data_tmp"
    temporary_link.unlink(missing_ok=True)
    temporary_link.symlink_to(staged.name)
    os.replace(temporary_link, link)
    for name in contents:
        target = directory / name
        if not target.is_symlink():
            target.unlink(missing_ok=True)
            target.symlink_to(Path(_DATA_LINK) / name)
    # The previous generation stays: a reader that resolved `..data` just before the swap may
    # still be opening files in it. Older ones go.
    keep = {staged.name} | ({previous.name} if previous is not None else set())
    for old in directory.glob("..[0-9]*"):
        if old.name not in keep and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
    return True


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


# -- the loop and its health endpoint ------------------------------------------------------------


class Watcher:
    """Runs `sync` every `interval` seconds; ready while the last success is recent."""

    def __init__(
        self,
        manager: CertificateManager,
        *,
        interval: float,
        stale_after: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._manager = manager
        self._interval = interval
        self._stale_after = stale_after
        self._monotonic = monotonic
        self._last_success: float | None = None
        self._last_error = "no pass has completed yet"
        self.stop = threading.Event()

    def readiness(self) -> tuple[bool, str]:
        """(ready, why). Not ready when the files or caBundles may lag behind the Secret."""
        if self._last_success is None:
            return False, self._last_error
        age = self._monotonic() - self._last_success
        if age > self._stale_after:
            return False, f"last successful pass {age:.0f}s ago: {self._last_error}"
        return True, "ok"

    def run_once(self) -> None:
        """One pass; failures are logged and leave the last success time unchanged."""
        try:
            result = self._manager.sync()
        except Exception as exc:  # one bad pass must not end the loop; readiness reports it
            self._last_error = f"{type(exc).__name__}: {exc}"
            logger.exception("certificate sync failed")
            return
        if result.published:
            self._last_success = self._monotonic()
        else:
            self._last_error = "the webhook configurations do not carry the CA bundle yet"

    def run(self) -> None:
        """Sync now and then every `interval` seconds until `stop` is set."""
        while not self.stop.is_set():
            self.run_once()
            self.stop.wait(self._interval)


def serve_health(watcher: Watcher, port: int, host: str = "0.0.0.0") -> http.server.HTTPServer:
    """Serve `GET /healthz` (alive) and `GET /readyz` (synced recently) in a daemon thread."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                status, text = 200, "ok"
            elif self.path == "/readyz":
                ready, text = watcher.readiness()
                status = 200 if ready else 503
            else:
                status, text = 404, "not found"
            body = (text + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Probes every few seconds are not worth a log line."""

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="certs-health", daemon=True).start()
    return server


def unregister_webhooks(api: KubeApi, *, mutating: str | None, validating: str | None) -> list[str]:
    """Delete the two webhook configurations (absent ones are fine); the names deleted."""
    deleted = []
    for resource, name in (
        ("mutatingwebhookconfigurations", mutating),
        ("validatingwebhookconfigurations", validating),
    ):
        if not name:
            continue
        path = resource_path(group=_ADMISSION_GROUP, version="v1", resource=resource, name=name)
        try:
            api.request("DELETE", path, timeout=_REQUEST_TIMEOUT)
        except ApiError as exc:
            if exc.status != 404:
                raise
            continue
        deleted.append(f"{resource}/{name}")
    return deleted
