"""Where the self-managed TLS material lives, who must trust it, and what one sync pass did."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from kaptain_warden.certs.rotation import Timings, TlsMaterial

__all__ = ["ADMISSION_GROUP", "REQUEST_TIMEOUT", "CertsSettings", "SyncResult"]

ADMISSION_GROUP: Final = "admissionregistration.k8s.io"
#: Seconds one request to the API server may take.
REQUEST_TIMEOUT: Final = 10.0


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
