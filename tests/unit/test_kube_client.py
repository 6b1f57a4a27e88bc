"""load_api_client: a kubeconfig's embedded credentials never reach the disk."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kaptain_warden.kube.client import kind_path, load_api_client
from kaptain_warden.kube.listing import ListRequest
from kaptain_warden.policies.kinds import KNOWN_KINDS

CA, CERT, KEY = b"ca pem\n", b"client cert pem\n", b"-----BEGIN PRIVATE KEY-----\nsecret\n"


def _b64(data: bytes) -> str:
    return base64.standard_b64encode(data).decode()


def write_kubeconfig(path: Path, *, user: dict[str, str]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://127.0.0.1:6443",
                    "certificate-authority-data": _b64(CA),
                },
            }
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process's temporary directory, empty: where the client used to write credentials."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setenv("TMPDIR", str(directory))
    monkeypatch.setattr("tempfile.tempdir", str(directory))
    return directory


def test_embedded_credentials_are_in_memory_files(tmp_path: Path, temp_dir: Path) -> None:
    user = {"client-certificate-data": _b64(CERT), "client-key-data": _b64(KEY)}
    configuration = load_api_client(str(write_kubeconfig(tmp_path / "kc", user=user))).configuration
    for path, content in (
        (configuration.ssl_ca_cert, CA),
        (configuration.cert_file, CERT),
        (configuration.key_file, KEY),
    ):
        assert path.startswith("/proc/self/fd/")
        assert Path(path).read_bytes() == content
    assert configuration.host == "https://127.0.0.1:6443"
    assert list(temp_dir.iterdir()) == []


def test_credential_files_are_still_read_relative_to_the_kubeconfig(
    tmp_path: Path, temp_dir: Path
) -> None:
    (tmp_path / "client.crt").write_bytes(CERT)
    (tmp_path / "client.key").write_bytes(KEY)
    user = {"client-certificate": "client.crt", "client-key": "client.key"}
    configuration = load_api_client(str(write_kubeconfig(tmp_path / "kc", user=user))).configuration
    assert configuration.cert_file == str(tmp_path / "client.crt")
    assert configuration.key_file == str(tmp_path / "client.key")
    assert list(temp_dir.iterdir()) == []


def test_a_killed_process_leaves_no_credentials_behind(tmp_path: Path, temp_dir: Path) -> None:
    user = {"client-certificate-data": _b64(CERT), "client-key-data": _b64(KEY)}
    kubeconfig = write_kubeconfig(tmp_path / "kc", user=user)
    code = (
        "import sys, time\n"
        "from kaptain_warden.kube.client import load_api_client\n"
        f"load_api_client({str(kubeconfig)!r})\n"
        "print('loaded', flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "loaded\n"
    finally:
        process.kill()  # SIGKILL: no atexit, no cleanup of any kind
        process.wait()
    assert list(temp_dir.iterdir()) == []


def test_kind_path_names_a_collection_or_an_object_of_a_kind():
    (tfjob,) = [k for k in KNOWN_KINDS if k.kind == "TFJob"]
    assert kind_path(tfjob) == "/apis/kubeflow.org/v1/tfjobs"
    assert (
        kind_path(tfjob, "team-a", "mnist")
        == "/apis/kubeflow.org/v1/namespaces/team-a/tfjobs/mnist"
    )
    secrets = ListRequest(api_version="v1", kind="Secret", resource="secrets")
    assert kind_path(secrets, namespace="team-a") == "/api/v1/namespaces/team-a/secrets"
