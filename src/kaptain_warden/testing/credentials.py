"""The control plane's PKI and kubeconfigs: one CA signs the API server's serving certificate
and every client certificate (CN = user, O = groups); service-account tokens are signed with a
key pair of their own."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import yaml
from cryptography.hazmat.primitives import serialization

from kaptain_warden.certs.pki import (
    CertKeyPair,
    build_ca,
    build_certificate,
    generate_private_key,
)

__all__ = [
    "certificate_credentials",
    "issue_client_certificate",
    "issue_serving_certificate",
    "write_control_plane_pki",
    "write_file",
    "write_kubeconfig",
]

#: The first address of the service range (`components.SERVICE_CLUSTER_IP_RANGE`): the
#: `kubernetes` Service's ClusterIP.
KUBERNETES_SERVICE_IP: Final = "10.0.0.1"
_CERT_VALIDITY: Final = dt.timedelta(days=1)
_CLUSTER_NAME: Final = "kaptain-warden-test"


def write_file(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """Write `data` to `path` with `mode` (private by default: keys)."""
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def certificate_credentials(identity: CertKeyPair) -> dict[str, str]:
    """A kubeconfig `user` entry for a client certificate, data embedded."""
    return {
        "client-certificate-data": _b64(identity.cert_pem),
        "client-key-data": _b64(identity.key_pem),
    }


def issue_client_certificate(ca: CertKeyPair, user: str, groups: Iterable[str] = ()) -> CertKeyPair:
    """A client certificate the API server accepts as `user` in `groups` (CN and O)."""
    return build_certificate(
        ca=ca,
        common_name=user,
        now=dt.datetime.now(dt.UTC),
        valid_for=_CERT_VALIDITY,
        organizations=tuple(groups),
        server=False,
        client=True,
    )


def issue_serving_certificate(
    ca: CertKeyPair, common_name: str, *, dns_names: Sequence[str], ip_addresses: Sequence[str]
) -> CertKeyPair:
    """A serving certificate for a component on loopback."""
    return build_certificate(
        ca=ca,
        common_name=common_name,
        now=dt.datetime.now(dt.UTC),
        valid_for=_CERT_VALIDITY,
        dns_names=tuple(dns_names),
        ip_addresses=tuple(ip_addresses),
    )


def write_control_plane_pki(directory: Path) -> tuple[CertKeyPair, CertKeyPair]:
    """Write the CA (`ca.crt`), the API server's serving pair (`apiserver.crt`/`.key`), the
    admin client pair (`admin.crt`/`.key`, CN=admin, O=system:masters) and the service-account
    key pair (`sa.key`, `sa.pub`) into `directory`; return (CA, admin)."""
    ca = build_ca(
        common_name="kaptain-warden test CA", now=dt.datetime.now(dt.UTC), valid_for=_CERT_VALIDITY
    )
    write_file(directory / "ca.crt", ca.cert_pem, 0o644)
    serving = issue_serving_certificate(
        ca,
        "kube-apiserver",
        dns_names=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        ip_addresses=("127.0.0.1", KUBERNETES_SERVICE_IP),
    )
    write_file(directory / "apiserver.crt", serving.cert_pem, 0o644)
    write_file(directory / "apiserver.key", serving.key_pem)
    admin = issue_client_certificate(ca, "admin", ("system:masters",))
    write_file(directory / "admin.crt", admin.cert_pem, 0o644)
    write_file(directory / "admin.key", admin.key_pem)
    # Service-account tokens: the API server verifies with the public key, the controller
    # manager signs with the private one.
    sa_key = generate_private_key()
    write_file(
        directory / "sa.key",
        sa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_file(
        directory / "sa.pub",
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        0o644,
    )
    return ca, admin


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_pem: bytes,
    user: str,
    credentials: Mapping[str, str],
    namespace: str = "default",
) -> Path:
    """Write a kubeconfig for `server` (trusting `ca_pem`) as `user` with `credentials`."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": _CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
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
    return write_file(path, yaml.safe_dump(config, sort_keys=False).encode())
