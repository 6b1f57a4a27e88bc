"""One sync pass of self-managed TLS: the certificate Secret, the caBundles, the server's files.

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
   at one instant (`files.write_files`).

The caBundle step is `ca_bundle`; the loop and its health endpoints are `watch`; removing the
webhook configurations is `unregister`.

RBAC it needs: get/update (and create, when nothing pre-creates it) on the one Secret, by
name; get/patch on the two webhook configurations, by name.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, Final

from kaptain_warden.certs.ca_bundle import publish_bundle, webhook_paths
from kaptain_warden.certs.files import write_files
from kaptain_warden.certs.rotation import CA_BUNDLE, TLS_CERT, TLS_KEY, TlsMaterial, next_step
from kaptain_warden.certs.settings import REQUEST_TIMEOUT, CertsSettings, SyncResult
from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import resource_path
from kaptain_warden.kube.errors import ApiError

__all__ = ["CertificateManager", "CertsError"]

logger = logging.getLogger(__name__)

_MAX_ROUNDS: Final = 8


class CertsError(RuntimeError):
    """The certificate Secret or the webhook configurations could not be brought up to date."""


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
                "GET", self._secret_path(), timeout=REQUEST_TIMEOUT
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
                timeout=REQUEST_TIMEOUT,
            )
            return
        # Keep everything else on the object (Helm's ownership labels and annotations).
        body = dict(secret)
        metadata = dict(body.get("metadata") or {})
        metadata["annotations"] = {**(metadata.get("annotations") or {}), **annotations}
        body["metadata"] = metadata
        body["data"] = encoded
        self._api.request("PUT", self._secret_path(), body=body, timeout=REQUEST_TIMEOUT)

    # -- the webhook configurations ------------------------------------------------------------

    @property
    def publishes(self) -> bool:
        """Whether this manager keeps any webhook configuration's caBundle current."""
        return bool(webhook_paths(self._settings))

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
            published = bool(material.bundle) and publish_bundle(
                self._api, self._settings, material
            )
            step = next_step(
                material,
                now=self._clock(),
                dns_names=self._settings.dns_names,
                timings=self._settings.timings,
                bundle_published=published,
            )
            if step is None:
                self.write_files(material)
                return SyncResult(material, tuple(changes), published)
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
