"""Self-signed material for local use: generated once, reused while valid, renewed otherwise."""

from __future__ import annotations

import datetime as dt
import ssl
import stat

import pytest
from cryptography import x509

from kaptain_warden.certs.selfsigned import (
    RENEW_BEFORE,
    default_cache_dir,
    ensure_self_signed,
    sans_for_host,
)

NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    directory = tmp_path_factory.mktemp("self-signed")
    files, fresh = ensure_self_signed(directory, now=NOW)
    assert fresh
    return directory, files


def test_the_pair_verifies_against_the_ca_for_loopback_names(generated):
    _, files = generated
    context = ssl.create_default_context(cafile=files.ca_file)
    context.load_cert_chain(files.cert_file, files.key_file)  # the key matches
    cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert stat.S_IMODE(files.key_file.stat().st_mode) == 0o600


def test_valid_material_is_reused(generated):
    directory, files = generated
    before = files.cert_file.read_bytes()
    again, fresh = ensure_self_signed(directory, now=NOW + dt.timedelta(days=30))
    assert not fresh and again == files and files.cert_file.read_bytes() == before


def test_material_near_expiry_is_renewed(tmp_path):
    files, _ = ensure_self_signed(tmp_path, now=NOW)
    later = x509.load_pem_x509_certificate(files.cert_file.read_bytes()).not_valid_after_utc
    _, fresh = ensure_self_signed(tmp_path, now=later - RENEW_BEFORE + dt.timedelta(hours=1))
    assert fresh


def test_material_not_covering_the_host_is_renewed(tmp_path):
    ensure_self_signed(tmp_path, now=NOW)
    dns, ips = sans_for_host("warden.example.com")
    files, fresh = ensure_self_signed(tmp_path, now=NOW, dns_names=dns, ip_addresses=ips)
    assert fresh
    cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "warden.example.com" in sans.get_values_for_type(x509.DNSName)


def test_damaged_material_is_replaced(tmp_path):
    files, _ = ensure_self_signed(tmp_path, now=NOW)
    files.key_file.write_text("garbage")
    _, fresh = ensure_self_signed(tmp_path, now=NOW)
    assert fresh


@pytest.mark.parametrize(
    ("host", "dns", "ips"),
    [
        ("127.0.0.1", ("localhost",), ("127.0.0.1", "::1")),
        ("0.0.0.0", ("localhost",), ("127.0.0.1", "::1")),
        ("10.1.2.3", ("localhost",), ("127.0.0.1", "::1", "10.1.2.3")),
        ("warden.local", ("localhost", "warden.local"), ("127.0.0.1", "::1")),
    ],
)
def test_names_for_a_listen_address(host, dns, ips):
    assert sans_for_host(host) == (dns, ips)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KAPTAIN_WARDEN_CACHE", str(tmp_path / "kw"))
    assert default_cache_dir() == tmp_path / "kw" / "self-signed"
    monkeypatch.delenv("KAPTAIN_WARDEN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "kaptain-warden" / "self-signed"
