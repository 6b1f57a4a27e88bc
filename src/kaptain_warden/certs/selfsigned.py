"""A CA and a serving certificate for local use, kept in a cache directory, reused while valid."""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from kaptain_warden.certs.pki import CertKeyPair, build_ca, build_certificate

CA_VALIDITY = dt.timedelta(days=365)
CERT_VALIDITY = dt.timedelta(days=365)
# Regenerate this long before expiry, so a server started today still serves next week.
RENEW_BEFORE = dt.timedelta(days=7)
LOCAL_DNS_NAMES = ("localhost",)
LOCAL_IP_ADDRESSES = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class SelfSignedFiles:
    """Where the generated material lives: the CA to trust, and the server's pair."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def default_cache_dir() -> Path:
    """`$KAPTAIN_WARDEN_CACHE/self-signed`, else `${XDG_CACHE_HOME:-~/.cache}/kaptain-warden/...`.

    The same root `hack/test-assets` uses for the control-plane binaries.
    """
    root = os.environ.get("KAPTAIN_WARDEN_CACHE")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "kaptain-warden")
    return Path(root).expanduser() / "self-signed"


def sans_for_host(host: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(DNS names, IP addresses) a certificate needs to serve `host` and the loopback names."""
    dns = list(LOCAL_DNS_NAMES)
    ips = list(LOCAL_IP_ADDRESSES)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host and host not in dns:
            dns.append(host)
    else:
        # A wildcard address is reached through one of the machine's names: loopback covers it.
        if not address.is_unspecified and str(address) not in ips:
            ips.append(str(address))
    return tuple(dns), tuple(ips)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically: a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def _usable(
    files: SelfSignedFiles, now: dt.datetime, dns_names: tuple[str, ...], ips: tuple[str, ...]
) -> bool:
    """True when the cached material is complete, consistent, current and covers the names."""
    try:
        ca = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
        cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
        key = serialization.load_pem_private_key(files.key_file.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    if cert.public_key() != key.public_key():
        return False
    expires = min(ca.not_valid_after_utc, cert.not_valid_after_utc)
    if expires - now < RENEW_BEFORE:
        return False
    have_dns = set(sans.get_values_for_type(x509.DNSName))
    have_ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    return set(dns_names) <= have_dns and set(ips) <= have_ips


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise servers started at the same time on one cache directory."""
    fd = os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_self_signed(
    directory: Path,
    *,
    now: dt.datetime,
    dns_names: tuple[str, ...] = LOCAL_DNS_NAMES,
    ip_addresses: tuple[str, ...] = LOCAL_IP_ADDRESSES,
) -> tuple[SelfSignedFiles, bool]:
    """The CA and serving pair in `directory`, generated when absent, expiring or not covering
    the names; returns the files and whether they were generated now."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = SelfSignedFiles(
        ca_file=directory / "ca.crt",
        cert_file=directory / "tls.crt",
        key_file=directory / "tls.key",
    )
    with _locked(directory):
        if _usable(files, now, dns_names, ip_addresses):
            return files, False
        ca = build_ca(common_name="kaptain-warden local CA", now=now, valid_for=CA_VALIDITY)
        pair: CertKeyPair = build_certificate(
            ca=ca,
            common_name="kaptain-warden",
            now=now,
            valid_for=CERT_VALIDITY,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
        )
        # The key first: a concurrent reader pairs files only under the lock anyway, but a
        # crash between the writes leaves a mismatch that _usable detects and repairs.
        _write(files.key_file, pair.key_pem, 0o600)
        _write(files.cert_file, pair.cert_pem, 0o644)
        _write(files.ca_file, ca.cert_pem, 0o644)
        return files, True
