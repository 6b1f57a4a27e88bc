"""Tier 3: CA rotations and renewals under a steady stream of admission requests: zero failures.

Real processes throughout: `kaptain-warden certs watch` keeps a Secret on the real API server,
both webhook configurations' caBundle and the files in a directory current, with lifetimes
short enough that the CA rotates every ~10 seconds and the serving certificate is renewed every
~6; `kaptain-warden serve` serves from those files. The test plays the API server's part: it
trusts exactly the caBundle it last read from the MutatingWebhookConfiguration (polled, as an
informer would see it), dials the service name over loopback, and keeps reviews flowing on new
and kept-alive connections. Every review must succeed.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from cryptography import x509
from kubernetes import client as k8s

from factories import review, secret
from kaptain_warden.kube.client import request_json
from kaptain_warden.testing.controlplane import ControlPlane

pytestmark = pytest.mark.e2e

ADMISSION = "/apis/admissionregistration.k8s.io/v1"
SERVICE = "warden"
# The CA is valid for 600 s and rotates when 590 s are left: 10 s after it was made. A new CA
# signs after 2 s in the published bundle; the old one leaves 5 s after that.
TIMINGS = [
    "--ca-validity=600s",
    "--ca-renew-before=590s",
    "--cert-validity=300s",
    "--cert-renew-before=294s",
    "--bundle-grace=2s",
    "--replica-grace=5s",
]
WANTED_CA_ROTATIONS = 2
MAX_SECONDS = 90.0


def kaptain_warden() -> str:
    return str(Path(sys.executable).with_name("kaptain-warden"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """A child process whose output is kept; stopped with SIGTERM at the end."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self.lines: queue.Queue[str] = queue.Queue()
        self.popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"},
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        with self.log.open("w") as out:
            for line in self.popen.stdout:
                out.write(line)
                out.flush()
                self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.popen.poll() is not None:
                    break
                continue
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no {pattern!r} from {self.popen.args}:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class ServiceConnection(http.client.HTTPSConnection):
    """HTTPS to a loopback port, verified against the Service's DNS name (as the API server)."""

    def __init__(self, port: int, server_name: str, context: ssl.SSLContext) -> None:
        super().__init__(server_name, port, context=context, timeout=10)
        self._port = port

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self._port), timeout=10)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


@dataclass
class Observed:
    """What the stand-in API server saw."""

    requests: int = 0
    failures: list[str] = field(default_factory=list)
    served: set[str] = field(default_factory=set)  # serving certificate fingerprints
    issuers: list[str] = field(default_factory=list)  # signing CAs, in the order first seen
    bundle_sizes: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rotations(self) -> int:
        return len(self.issuers) - 1


def test_rotations_under_steady_admission_traffic_fail_no_request(
    control_plane: ControlPlane, kube_admin, namespace, webhooks, tmp_path
):
    cert_dir = tmp_path / "tls"
    health_port = free_port()
    watch = Process(
        [
            kaptain_warden(),
            "certs",
            "watch",
            f"--kubeconfig={control_plane.kubeconfig_path}",
            f"--namespace={namespace}",
            "--secret=warden-tls",
            f"--service={SERVICE}",
            f"--cert-dir={cert_dir}",
            f"--mutating-webhook={webhooks}",
            f"--validating-webhook={webhooks}",
            "--interval=1s",
            "--stale-after=3s",
            f"--health-port={health_port}",
            "--health-host=127.0.0.1",
            "--log-format=text",
            *TIMINGS,
        ],
        tmp_path / "watch.log",
    )
    server = None
    try:
        watch.wait_for(r"set the caBundle of .*validatingwebhookconfigurations")
        deadline = time.monotonic() + 30
        while not (cert_dir / "tls.crt").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        server = Process(
            [
                kaptain_warden(),
                "serve",
                "--host=127.0.0.1",
                "--port=0",
                f"--tls-cert-file={cert_dir / 'tls.crt'}",
                f"--tls-private-key-file={cert_dir / 'tls.key'}",
                "--workers=2",
                "--threads=4",
                "--keepalive=5",
                "--log-format=text",
                "--log-level=WARNING",
            ],
            tmp_path / "serve.log",
        )
        port = int(server.wait_for(r"listening on https://127\.0\.0\.1:(\d+)").group(1))
        observed = stream_reviews(kube_admin, webhooks, port, f"{SERVICE}.{namespace}.svc")
        ready = http.client.HTTPConnection("127.0.0.1", health_port, timeout=5)
        ready.request("GET", "/readyz")
        assert ready.getresponse().status == 200
    finally:
        if server is not None:
            server.stop()
        watch.stop()
    log = (tmp_path / "watch.log").read_text()
    assert observed.failures == [], observed.failures[:5]
    assert observed.rotations() >= WANTED_CA_ROTATIONS, log[-3000:]
    assert len(observed.served) > observed.rotations() + 1  # renewals under one CA too
    assert "the old CA left the bundle" in log
    # The bundle grew past one CA and shrank back to one, more than once. Past one is two, or
    # three when the next rotation comes due before the last one's old CA left (a watch slowed
    # by a loaded machine promotes late; both old CAs then leave together): trust is only ever
    # added early and removed late, so every review above still succeeded.
    one_or_more = [min(size, 2) for size in observed.bundle_sizes]
    changes = [size for i, size in enumerate(one_or_more) if i == 0 or one_or_more[i - 1] != size]
    assert changes[:4] == [1, 2, 1, 2], observed.bundle_sizes
    assert observed.requests > 200


def stream_reviews(
    kube_admin: k8s.ApiClient, webhooks: str, port: int, server_name: str
) -> Observed:
    """Trust what the webhook configuration says; send reviews until enough rotations."""
    observed = Observed()
    contexts: dict[str, ssl.SSLContext] = {}
    current: list[ssl.SSLContext] = []
    stop = threading.Event()

    def watch_bundle() -> None:  # the API server's informer
        path = f"{ADMISSION}/mutatingwebhookconfigurations/{webhooks}"
        while not stop.is_set():
            config = request_json(kube_admin, "GET", path)
            bundle = config["webhooks"][0]["clientConfig"]["caBundle"]
            if bundle not in contexts:
                pem = base64.b64decode(bundle).decode()
                contexts[bundle] = ssl.create_default_context(cadata=pem)
                with observed.lock:
                    observed.bundle_sizes.append(pem.count("BEGIN CERTIFICATE"))
            current[:] = [contexts[bundle]]
            stop.wait(0.2)

    def client(reuse: int) -> None:
        connection: ServiceConnection | None = None
        sent_on_connection = 0
        while not stop.is_set():
            if connection is None or sent_on_connection >= reuse:
                if connection is not None:
                    connection.close()
                connection = ServiceConnection(port, server_name, current[0])
                sent_on_connection = 0
            document = review(secret())
            try:
                connection.request(
                    "POST",
                    "/mutate",
                    body=orjson.dumps(document),
                    headers={"Content-Type": "application/json"},
                )
                response = connection.getresponse()
                body = response.read()
                answer = orjson.loads(body)
                ok = (
                    response.status == 200
                    and answer["response"]["uid"] == document["request"]["uid"]
                )
                if not ok:
                    raise AssertionError(f"HTTP {response.status}: {body[:200]!r}")
                if sent_on_connection == 0:
                    record(connection)
            except Exception as exc:  # every failure is counted, none may happen
                with observed.lock:
                    observed.failures.append(f"{type(exc).__name__}: {exc}")
                connection.close()
                connection = None
            sent_on_connection += 1
            with observed.lock:
                observed.requests += 1
        if connection is not None:
            connection.close()

    def record(connection: ServiceConnection) -> None:
        assert connection.sock is not None
        der = connection.sock.getpeercert(binary_form=True)
        cert = x509.load_der_x509_certificate(der)
        issuer_key = cert.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier
        ).value.key_identifier
        with observed.lock:
            observed.served.add(hashlib.sha256(der).hexdigest())
            if issuer_key.hex() not in observed.issuers:
                observed.issuers.append(issuer_key.hex())

    informer = threading.Thread(target=watch_bundle, daemon=True)
    informer.start()
    while not current:
        time.sleep(0.05)
    # One client makes a new connection (a TLS handshake) per review; one keeps connections
    # alive for 20 reviews, as the API server does.
    clients = [threading.Thread(target=client, args=(reuse,), daemon=True) for reuse in (1, 20)]
    for thread in clients:
        thread.start()
    deadline = time.monotonic() + MAX_SECONDS
    while time.monotonic() < deadline and observed.rotations() < WANTED_CA_ROTATIONS + 1:
        time.sleep(0.5)
    stop.set()
    for thread in [*clients, informer]:
        thread.join(timeout=15)
    return observed
