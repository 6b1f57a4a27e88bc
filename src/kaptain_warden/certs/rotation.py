"""The self-managed TLS lifecycle as a pure plan: what the certificate Secret should hold next.

The Secret holds a signing CA, the trust bundle written into both webhook configurations'
`caBundle`, and one serving certificate shared by every admission-server replica. `next_step`
looks at it (and at whether the webhook configurations already carry the bundle) and answers
the one change to make now, or None. Every replica runs the same plan; the API server's
optimistic concurrency (`resourceVersion`) lets exactly one of them apply each step.

A CA rotation never makes the API server distrust a serving certificate in use:

1. ahead of the CA's expiry a new CA joins the bundle, beside the old one (the serving
   certificate is still signed by the old CA, which the bundle still trusts);
2. once both webhook configurations carry that bundle, and `bundle_grace` has passed so every
   API server has seen it, the serving certificate is re-issued by the new CA;
3. once `replica_grace` has passed since then, long enough for every replica to serve the new
   certificate (replicas sync every few seconds and report not-ready when they fall behind),
   the old CA leaves the bundle.

A serving-certificate renewal under the same CA needs no bundle change at all.
This is the same order controller-runtime's and Kubernetes' own CA rotations follow: trust
first, then serve, then forget.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization

from kaptain_warden.certs.pki import CertKeyPair, build_ca, build_certificate

# Keys of the Secret's `data`. `tls.crt`/`tls.key`/`ca.crt` follow the kubernetes.io/tls and
# cert-manager conventions, so a ServiceMonitor or a client can use the Secret as they would
# any other TLS Secret; `ca.crt` is the trust bundle, not only the signing CA.
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"
CA_BUNDLE = "ca.crt"
SIGNING_CA_CERT = "ca-signing.crt"
SIGNING_CA_KEY = "ca-signing.key"
NEXT_CA_CERT = "ca-next.crt"
NEXT_CA_KEY = "ca-next.key"

ANNOTATION_PREFIX = "warden.kaptain.io/"
BUNDLE_CHANGED_AT = ANNOTATION_PREFIX + "ca-bundle-changed-at"
SERVING_CHANGED_AT = ANNOTATION_PREFIX + "serving-cert-changed-at"
# Incremented with every bundle change, and copied onto the webhook configurations with the
# bundle: a replica holding an older view never writes an older bundle back.
BUNDLE_GENERATION = ANNOTATION_PREFIX + "ca-bundle-generation"

_PEM_END = b"-----END CERTIFICATE-----"
CA_COMMON_NAME = "kaptain-warden webhook CA"


@dataclass(frozen=True)
class Timings:
    """Lifetimes and waits of the self-managed certificates."""

    ca_validity: dt.timedelta = dt.timedelta(days=730)
    """How long a CA is valid. Default 2 years."""

    ca_renew_before: dt.timedelta = dt.timedelta(days=60)
    """Start a CA rotation this long before the CA expires. Default 60 days."""

    cert_validity: dt.timedelta = dt.timedelta(days=90)
    """How long a serving certificate is valid (never past its CA). Default 90 days."""

    cert_renew_before: dt.timedelta = dt.timedelta(days=30)
    """Re-issue the serving certificate this long before it expires. Default 30 days."""

    bundle_grace: dt.timedelta = dt.timedelta(minutes=1)
    """After the bundle with a new CA is published, wait this long before serving a certificate
    the new CA signed: every API server's informer must have seen the bundle. Default 1 minute."""

    replica_grace: dt.timedelta = dt.timedelta(minutes=5)
    """After the serving certificate changes, wait this long before dropping the old CA from the
    bundle: every replica must serve the new certificate by then. Default 5 minutes; it must
    exceed how stale a replica may be before it reports not ready."""

    def __post_init__(self) -> None:
        if self.ca_renew_before >= self.ca_validity:
            raise ValueError("ca_renew_before must be shorter than ca_validity")
        if self.cert_renew_before >= self.cert_validity:
            raise ValueError("cert_renew_before must be shorter than cert_validity")


@dataclass(frozen=True)
class TlsMaterial:
    """What the certificate Secret holds, parsed. Unreadable entries count as absent."""

    ca: CertKeyPair | None = None
    next_ca: CertKeyPair | None = None
    bundle: tuple[bytes, ...] = ()
    serving: CertKeyPair | None = None
    bundle_changed_at: dt.datetime | None = None
    serving_changed_at: dt.datetime | None = None
    generation: int = 0

    @property
    def bundle_pem(self) -> bytes:
        """The trust bundle as one PEM file, in bundle order."""
        return b"".join(self.bundle)

    @classmethod
    def from_secret(cls, data: Mapping[str, bytes], annotations: Mapping[str, str]) -> TlsMaterial:
        """Parse decoded Secret data and annotations."""
        generation = annotations.get(BUNDLE_GENERATION, "0")
        return cls(
            ca=_pair(data, SIGNING_CA_CERT, SIGNING_CA_KEY),
            next_ca=_pair(data, NEXT_CA_CERT, NEXT_CA_KEY),
            bundle=split_pem_certificates(data.get(CA_BUNDLE, b"")),
            serving=_pair(data, TLS_CERT, TLS_KEY),
            bundle_changed_at=_parse_time(annotations.get(BUNDLE_CHANGED_AT)),
            serving_changed_at=_parse_time(annotations.get(SERVING_CHANGED_AT)),
            generation=int(generation) if generation.isdigit() else 0,
        )

    def to_secret(self) -> tuple[dict[str, bytes], dict[str, str]]:
        """The Secret data (not yet base64-encoded) and our annotations."""
        data: dict[str, bytes] = {CA_BUNDLE: self.bundle_pem}
        if self.ca is not None:
            data[SIGNING_CA_CERT], data[SIGNING_CA_KEY] = self.ca.cert_pem, self.ca.key_pem
        if self.next_ca is not None:
            data[NEXT_CA_CERT], data[NEXT_CA_KEY] = self.next_ca.cert_pem, self.next_ca.key_pem
        if self.serving is not None:
            data[TLS_CERT], data[TLS_KEY] = self.serving.cert_pem, self.serving.key_pem
        annotations = {BUNDLE_GENERATION: str(self.generation)}
        if self.bundle_changed_at is not None:
            annotations[BUNDLE_CHANGED_AT] = _format_time(self.bundle_changed_at)
        if self.serving_changed_at is not None:
            annotations[SERVING_CHANGED_AT] = _format_time(self.serving_changed_at)
        return data, annotations


@dataclass(frozen=True)
class Step:
    """One change to the certificate Secret, and why (for the log)."""

    material: TlsMaterial
    reason: str


def next_step(
    material: TlsMaterial,
    *,
    now: dt.datetime,
    dns_names: tuple[str, ...],
    timings: Timings,
    bundle_published: bool,
) -> Step | None:
    """The next change to make to `material`, or None when it is as it should be.

    `bundle_published` says whether both webhook configurations carry `material.bundle` today;
    a new CA starts signing only after that (and `timings.bundle_grace`).
    """
    if material.ca is None or material.ca.not_after <= now:
        # Nothing to sign with (a new install, or a CA that expired while nobody ran).
        return _create(material, now=now, dns_names=dns_names, timings=timings)
    kept = tuple(pem for pem in material.bundle if _valid_at(pem, now))
    if material.ca.cert_pem not in kept:
        # Expired CAs leave the bundle; the signing CA must always be in it.
        return Step(
            _with_bundle(material, (*kept, material.ca.cert_pem), now),
            "the signing CA was missing from the bundle: added it",
        )
    if kept != material.bundle:
        return Step(_with_bundle(material, kept, now), "removed expired CAs from the bundle")
    serving_ok = _serving_is_current(material.serving, material.ca, now, dns_names, timings)
    if material.next_ca is not None:
        grace_over = _at_least(material.bundle_changed_at, timings.bundle_grace, now)
        if bundle_published and grace_over:
            promoted = replace(material, ca=material.next_ca, next_ca=None)
            return Step(
                _with_serving(promoted, now, dns_names, timings),
                "the new CA now signs the serving certificate",
            )
    elif material.ca.not_after - now <= timings.ca_renew_before:
        next_ca = build_ca(common_name=CA_COMMON_NAME, now=now, valid_for=timings.ca_validity)
        staged = replace(material, next_ca=next_ca)
        return Step(
            _with_bundle(staged, (*material.bundle, next_ca.cert_pem), now),
            f"the CA expires at {_format_time(material.ca.not_after)}: a new CA joined the bundle",
        )
    if not serving_ok:
        return Step(
            _with_serving(material, now, dns_names, timings), "issued a new serving certificate"
        )
    trusted = {material.ca.cert_pem} | (
        {material.next_ca.cert_pem} if material.next_ca is not None else set()
    )
    if set(material.bundle) - trusted and _at_least(
        material.serving_changed_at, timings.replica_grace, now
    ):
        bundle = tuple(pem for pem in material.bundle if pem in trusted)
        return Step(_with_bundle(material, bundle, now), "the old CA left the bundle")
    return None


def _create(
    material: TlsMaterial, *, now: dt.datetime, dns_names: tuple[str, ...], timings: Timings
) -> Step:
    """A new CA and serving certificate. Still-valid CAs of a damaged Secret stay trusted."""
    ca = build_ca(common_name=CA_COMMON_NAME, now=now, valid_for=timings.ca_validity)
    kept = tuple(pem for pem in material.bundle if _valid_at(pem, now))
    created = replace(material, ca=ca, next_ca=None)
    created = _with_bundle(created, (*kept, ca.cert_pem), now)
    return Step(_with_serving(created, now, dns_names, timings), "created a CA")


def _with_bundle(material: TlsMaterial, bundle: tuple[bytes, ...], now: dt.datetime) -> TlsMaterial:
    return replace(
        material, bundle=bundle, bundle_changed_at=now, generation=material.generation + 1
    )


def _with_serving(
    material: TlsMaterial, now: dt.datetime, dns_names: tuple[str, ...], timings: Timings
) -> TlsMaterial:
    assert material.ca is not None
    serving = build_certificate(
        ca=material.ca,
        common_name=dns_names[0],
        dns_names=dns_names,
        now=now,
        valid_for=timings.cert_validity,
    )
    if material.serving is not None:
        serving = _for_key(serving, material.ca, material.serving.key_pem)
    return replace(material, serving=serving, serving_changed_at=now)


def _for_key(serving: CertKeyPair, ca: CertKeyPair, key_pem: bytes) -> CertKeyPair:
    """`serving` re-signed for the existing serving key, so renewals keep the key.

    Why: servers load the certificate and the key with two file opens per handshake (gunicorn
    calls `load_cert_chain` for each new connection). If both changed, a handshake falling
    between the opens would pair a new certificate with an old key and fail; with one key
    every certificate ever written matches it. The key lives as long as the Secret does
    (cert-manager's `rotationPolicy: Never`); deleting the Secret starts over with a new one.
    """
    key = serialization.load_pem_private_key(key_pem, password=None)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    cert = serving.certificate
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(cert.serial_number)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for extension in cert.extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    signed = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    return CertKeyPair(signed.public_bytes(serialization.Encoding.PEM), key_pem)


def _serving_is_current(
    serving: CertKeyPair | None,
    ca: CertKeyPair,
    now: dt.datetime,
    dns_names: tuple[str, ...],
    timings: Timings,
) -> bool:
    """Signed by `ca`, for exactly `dns_names`, with its own key, and not due for renewal."""
    if serving is None:
        return False
    cert = serving.certificate
    if cert.not_valid_after_utc - now <= timings.cert_renew_before:
        return False
    try:
        cert.verify_directly_issued_by(ca.certificate)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (InvalidSignature, ValueError, TypeError, x509.ExtensionNotFound):
        return False
    if sorted(sans.get_values_for_type(x509.DNSName)) != sorted(dns_names):
        return False
    key = serialization.load_pem_private_key(serving.key_pem, password=None)
    return _spki(key.public_key()) == _spki(cert.public_key())


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _at_least(since: dt.datetime | None, wait: dt.timedelta, now: dt.datetime) -> bool:
    """True when `wait` has passed since `since` (an unknown time counts as long ago)."""
    return since is None or now - since >= wait


def _valid_at(pem: bytes, now: dt.datetime) -> bool:
    cert = x509.load_pem_x509_certificate(pem)
    return cert.not_valid_before_utc <= now < cert.not_valid_after_utc


def split_pem_certificates(bundle: bytes) -> tuple[bytes, ...]:
    """The certificates of a PEM bundle, each as its own PEM block; unparsable blocks dropped."""
    blocks: list[bytes] = []
    for chunk in bundle.split(_PEM_END)[:-1]:
        start = chunk.find(b"-----BEGIN CERTIFICATE-----")
        if start < 0:
            continue
        pem = chunk[start:] + _PEM_END + b"\n"
        try:
            x509.load_pem_x509_certificate(pem)
        except ValueError:
            continue
        if pem not in blocks:
            blocks.append(pem)
    return tuple(blocks)


def _pair(data: Mapping[str, bytes], cert_key: str, key_key: str) -> CertKeyPair | None:
    cert_pem, key_pem = data.get(cert_key), data.get(key_key)
    if not cert_pem or not key_pem:
        return None
    try:
        x509.load_pem_x509_certificate(cert_pem)
        serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return None
    return CertKeyPair(cert_pem, key_pem)


def _format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
