"""The certificate files' atomic swap, the sidecar's readiness, and the certs command line."""

import os
import threading
from pathlib import Path

import pytest

from kaptain_warden.certs.files import write_files
from kaptain_warden.certs.settings import CertsSettings
from kaptain_warden.certs.watch import Watcher
from kaptain_warden.cli import main


def test_files_are_swapped_in_through_one_symlink(tmp_path):
    # keep_for=0: generations go as soon as they are older than the previous one.
    assert write_files(tmp_path, {"tls.crt": b"cert-1", "tls.key": b"key-1"}, keep_for=0)
    first = (tmp_path / "..data").resolve()
    assert (tmp_path / "tls.crt").read_bytes() == b"cert-1"
    assert os.readlink(tmp_path / "tls.crt") == os.path.join("..data", "tls.crt")
    assert oct((tmp_path / "tls.key").stat().st_mode & 0o777) == "0o600"

    assert write_files(tmp_path, {"tls.crt": b"cert-2", "tls.key": b"key-1"}, keep_for=0)
    assert (tmp_path / "tls.crt").read_bytes() == b"cert-2"
    assert first.exists()  # a reader that resolved `..data` before the swap can finish
    assert write_files(tmp_path, {"tls.crt": b"cert-3", "tls.key": b"key-1"}, keep_for=0)
    assert not first.exists()  # older generations go
    assert len([p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink()]) == 2
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("..")) == [
        "tls.crt",
        "tls.key",
    ]


def test_a_generation_replaced_moments_ago_stays(tmp_path):
    for i in range(4):
        assert write_files(tmp_path, {"tls.crt": b"cert-%d" % i})
    # Four swaps within the default keep_for: a reader that resolved any of them can finish.
    assert len([p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink()]) == 4
    assert write_files(tmp_path, {"tls.crt": b"cert-4"}, keep_for=0)
    assert len([p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink()]) == 2


def test_unchanged_files_are_not_rewritten(tmp_path):
    contents = {"tls.crt": b"cert", "tls.key": b"key"}
    assert write_files(tmp_path, contents)
    generation = (tmp_path / "..data").resolve()
    assert not write_files(tmp_path, contents)
    assert (tmp_path / "..data").resolve() == generation


def test_a_reader_never_sees_a_missing_or_partial_file(tmp_path):
    write_files(tmp_path, {"tls.crt": b"a" * 65536})
    stop = threading.Event()
    seen: set[tuple[int, bytes, bytes]] = set()
    errors: list[OSError] = []

    def read() -> None:
        while not stop.is_set():
            try:
                content = (tmp_path / "tls.crt").read_bytes()
            except OSError as exc:
                errors.append(exc)
                continue
            seen.add((len(content), content[:1], content[-1:]))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(200):
            write_files(tmp_path, {"tls.crt": (b"b" if i % 2 else b"a") * 65536})
    finally:
        stop.set()
        reader.join()
    assert errors == []
    assert seen <= {(65536, b"a", b"a"), (65536, b"b", b"b")}


class FakeManager:
    def __init__(self, outcomes):
        self.outcomes = list(outcomes)

    def sync(self):
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


class Result:
    def __init__(self, published: bool):
        self.published = published


def test_readiness_follows_the_last_successful_pass():
    clock = [100.0]
    watcher = Watcher(
        FakeManager([Result(True), RuntimeError("API down"), Result(False)]),  # type: ignore[arg-type]
        interval=1,
        stale_after=10,
        monotonic=lambda: clock[0],
    )
    assert watcher.readiness() == (False, "no pass has completed yet")
    watcher.run_once()
    assert watcher.readiness() == (True, "ok")
    clock[0] += 5
    watcher.run_once()  # fails, but the last success is recent
    assert watcher.readiness()[0]
    clock[0] += 6
    ready, why = watcher.readiness()
    assert not ready and "RuntimeError: API down" in why
    watcher.run_once()  # the bundle is not published: still not ready
    ready, why = watcher.readiness()
    assert not ready and "do not carry the CA bundle" in why


def test_the_certificate_names_are_the_services():
    settings = CertsSettings(namespace="ns", secret_name="s", service_name="warden")
    assert settings.dns_names == (
        "warden.ns.svc",
        "warden",
        "warden.ns",
        "warden.ns.svc.cluster.local",
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--stale-after=5s", "--interval=10s"], "--stale-after must exceed --interval"),
        (["--stale-after=10m"], "--stale-after must be shorter than --replica-grace"),
        (["--cert-renew-before=100d"], "cert_renew_before must be shorter than cert_validity"),
    ],
)
def test_watch_refuses_contradictory_timings(capsys, flags, message):
    argv = ["certs", "watch", "--namespace=ns", "--secret=s", "--service=svc", *flags]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_durations_are_checked_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["certs", "bootstrap", "--secret=s", "--service=svc", "--timeout=soon"])
    assert "argument --timeout" in capsys.readouterr().err


def test_outside_a_pod_the_namespace_is_required(capsys, monkeypatch):
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    if Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").exists():
        pytest.skip("running inside a pod")
    assert main(["certs", "bootstrap", "--secret=s", "--service=svc"]) == 2
    assert "--namespace is required" in capsys.readouterr().err
