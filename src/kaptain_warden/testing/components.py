"""The control plane's components as processes: their command lines (files named as
`credentials.write_control_plane_pki` writes them into the work directory) and the HTTP checks
that say a component is ready."""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Final

__all__ = [
    "SERVICE_CLUSTER_IP_RANGE",
    "answers_ok",
    "apiserver_argv",
    "controller_manager_argv",
    "etcd_argv",
    "http_get",
]

SERVICE_CLUSTER_IP_RANGE: Final = "10.0.0.0/24"


def etcd_argv(binary: Path, work_dir: Path, *, client_port: int, peer_port: int) -> list[str]:
    """etcd on loopback, its data in `work_dir/etcd-data` (no fsync: tests, not durability)."""
    client_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    return [
        str(binary),
        "--name=default",
        f"--data-dir={work_dir / 'etcd-data'}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=default={peer_url}",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_argv(
    binary: Path, work_dir: Path, *, port: int, etcd_port: int, extra: Sequence[str] = ()
) -> list[str]:
    """kube-apiserver on loopback: TLS and client certificates from our CA, RBAC, tokens."""
    return [
        str(binary),
        "--advertise-address=127.0.0.1",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={work_dir / 'apiserver.crt'}",
        f"--tls-private-key-file={work_dir / 'apiserver.key'}",
        f"--cert-dir={work_dir / 'apiserver-certs'}",
        f"--client-ca-file={work_dir / 'ca.crt'}",
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        # As envtest: no ServiceAccount admission, so Pods need no token Secret/volume.
        "--disable-admission-plugins=ServiceAccount",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        f"--service-account-issuer=https://127.0.0.1:{port}/",
        f"--service-account-key-file={work_dir / 'sa.pub'}",
        f"--service-account-signing-key-file={work_dir / 'sa.key'}",
        *extra,
    ]


def controller_manager_argv(
    binary: Path,
    work_dir: Path,
    *,
    kubeconfig: Path,
    port: int,
    controllers: Sequence[str],
    extra: Sequence[str] = (),
) -> list[str]:
    """kube-controller-manager without leader election, running `controllers` only."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        f"--controllers={','.join(controllers)}",
        f"--service-account-private-key-file={work_dir / 'sa.key'}",
        f"--root-ca-file={work_dir / 'ca.crt'}",
        "--use-service-account-credentials=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={work_dir / 'controller-manager.crt'}",
        f"--tls-private-key-file={work_dir / 'controller-manager.key'}",
        # Client-side rate limits well above the defaults (20/30): tests burst.
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        *extra,
    ]


def http_get(
    host: str, port: int, path: str, *, context: ssl.SSLContext | None
) -> tuple[int, bytes]:
    """(status, body) of one GET, over TLS when `context` is given."""
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


def answers_ok(host: str, port: int, path: str, context: ssl.SSLContext | None) -> bool:
    """Whether a GET of `path` answers 200 (False when nothing answers)."""
    try:
        status, _ = http_get(host, port, path, context=context)
    except (OSError, http.client.HTTPException):
        return False
    return status == 200
