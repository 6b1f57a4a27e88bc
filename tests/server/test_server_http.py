"""Tier 2: HTTP behaviour of the real server: refusals, metrics, logs, keep-alive, SIGTERM."""

from __future__ import annotations

import http.client
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from warden_server import GRACEFUL_TIMEOUT, Server

from factories import review, revision, secret

JSON = {"Content-Type": "application/json"}
LIMIT = 1024 * 1024  # the shared server's --max-body-bytes


def good_request(server: Server, session: requests.Session) -> None:
    """A valid review still gets its answer (the worker and the connection survived)."""
    doc = review(secret())
    response = server.post(session, "/mutate", doc)
    assert response.status_code == 200
    assert response.json()["response"]["uid"] == doc["request"]["uid"]


def _review_with(**changes: object) -> bytes:
    doc = review(secret())
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return orjson.dumps(doc)


def _request_without_uid() -> bytes:
    doc = review(secret())
    del doc["request"]["uid"]
    return orjson.dumps(doc)


BAD_INPUTS = [
    pytest.param(b"{this is not json", JSON, 400, "not JSON", id="not-json"),
    pytest.param(b'["a", "list"]', JSON, 400, "got array", id="not-an-object"),
    pytest.param(
        _review_with(apiVersion="admission.k8s.io/v1beta1"),
        JSON,
        400,
        "speaks admission.k8s.io/v1",
        id="unknown-version",
    ),
    pytest.param(
        _review_with(kind="Pod"), JSON, 400, "expected AdmissionReview", id="not-a-review"
    ),
    pytest.param(_review_with(request=None), JSON, 400, "request is missing", id="no-request"),
    pytest.param(_request_without_uid(), JSON, 400, "request.uid is missing", id="no-uid"),
    pytest.param(
        _review_with(), {"Content-Type": "text/yaml"}, 415, "application/json", id="content-type"
    ),
    pytest.param(b" " * (LIMIT + 1), JSON, 413, "over the limit", id="oversized"),
]


@pytest.mark.parametrize(("data", "headers", "status", "words"), BAD_INPUTS)
@pytest.mark.parametrize("path", ["/mutate", "/validate"])
def test_bad_input_gets_a_json_4xx_and_the_next_request_still_works(
    server, session, path, data, headers, status, words
):
    good_request(server, session)
    response = session.post(server.url + path, data=data, headers=headers, timeout=10)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert words in response.json()["error"]
    good_request(server, session)


def test_each_bad_input_is_logged_once(server, session):
    marker = "text/the-marker-of-this-test"
    session.post(server.url + "/mutate", data=b"{}", headers={"Content-Type": marker}, timeout=10)
    good_request(server, session)
    refusals = [
        line
        for line in server.logs_until(lambda line: marker in line.get("msg", ""))
        if marker in line.get("msg", "")
    ]
    assert len(refusals) == 1
    assert refusals[0]["level"] == "WARNING" and refusals[0]["http_status"] == 415


def test_unknown_path_is_a_json_404(server, session):
    response = session.get(server.url + "/nope", timeout=10)
    assert response.status_code == 404 and "error" in response.json()


def metric(server: Server, name: str, labels: dict[str, str]) -> float:
    with server.session() as fresh:  # a new connection: any worker may answer
        text = fresh.get(server.url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


def test_metrics_count_every_review_whichever_worker_answered(server):
    patched = {"endpoint": "mutate", "operation": "CREATE", "verdict": "patched"}
    name = "kaptain_warden_admission_requests_total"
    before = metric(server, name, patched)
    for _ in range(12):
        with server.session() as fresh:  # new connections spread over both workers
            good_request(server, fresh)
    # Every scrape sums every worker's samples, whichever worker serves it.
    assert [metric(server, name, patched) for _ in range(4)] == [before + 12] * 4
    count = metric(
        server, "kaptain_warden_admission_duration_seconds_count", {"endpoint": "mutate"}
    )
    assert count >= 12


def test_bad_requests_are_counted(server, session):
    labels = {"endpoint": "validate", "code": "415"}
    before = metric(server, "kaptain_warden_admission_bad_requests_total", labels)
    session.post(server.url + "/validate", data=b"{}", headers={"Content-Type": "text/plain"})
    assert metric(server, "kaptain_warden_admission_bad_requests_total", labels) == before + 1


def test_every_review_logs_one_json_line_with_its_facts(server, session):
    doc = review(secret(), uid="log-line-uid")
    server.post(session, "/validate", doc)
    good_request(server, session)
    lines = server.logs_until(lambda entry: entry.get("uid") == "log-line-uid")
    (line,) = [entry for entry in lines if entry.get("uid") == "log-line-uid"]
    assert line["logger"] == "kaptain_warden.webhook.app"
    for field in ("ts", "level", "msg", "user", "kind", "namespace", "object", "operation"):
        assert line[field]
    assert line["verdict"] == "allowed" and line["rule"] == "credentials-secrets"
    assert line["endpoint"] == "validate" and isinstance(line["duration_ms"], float)


def test_one_connection_serves_many_reviews(server):
    """Keep-alive: the API server reuses connections; no TLS handshake per review."""
    context = ssl.create_default_context(cafile=server.ca_file)
    host, port = server.url.removeprefix("https://").rsplit(":", 1)
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    try:
        local_ports = set()
        for _ in range(20):
            doc = review(secret())
            connection.request("POST", "/mutate", body=orjson.dumps(doc), headers=JSON)
            response = connection.getresponse()
            assert response.status == 200
            assert orjson.loads(response.read())["response"]["uid"] == doc["request"]["uid"]
            assert response.getheader("Connection", "").lower() == "keep-alive"
            assert connection.sock is not None
            local_ports.add(connection.sock.getsockname()[1])
        assert len(local_ports) == 1
    finally:
        connection.close()


def _raw_review(
    host: str, uid: str, *, version: str = "HTTP/1.1", extra: str = ""
) -> tuple[bytes, bytes]:
    """(head, body) of a /validate review as the API server sends it (a query string too)."""
    body = orjson.dumps(review(secret(), uid=uid))
    head = (
        f"POST /validate?timeout=10s {version}\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode()
    return head, body


def test_reviews_skip_gunicorns_parser_and_answer_the_same(server):
    """A plain HTTP/1.1 review is answered by the worker itself (no gunicorn parser, environ or
    response: its answer has no `Server: gunicorn`), with the same body, status and framing as
    one that goes through gunicorn (HTTP/1.0 does); pipelined reviews are answered in order,
    and `Connection: close` is honoured."""
    context = ssl.create_default_context(cafile=server.ca_file)
    host, port = server.url.removeprefix("https://").rsplit(":", 1)
    answers = {}
    for version in ("HTTP/1.1", "HTTP/1.0"):
        with context.wrap_socket(
            socket.create_connection((host, int(port)), timeout=10), server_hostname=host
        ) as tls:
            head, body = _raw_review(host, "same-uid", version=version)
            tls.sendall(head + body)
            answers[version] = read_response(tls, bytearray())
    fast_status, fast_headers, fast_body = answers["HTTP/1.1"]
    slow_status, slow_headers, slow_body = answers["HTTP/1.0"]
    assert b"server: gunicorn" in slow_headers
    assert b"server:" not in fast_headers
    assert fast_status == slow_status.replace(b"HTTP/1.0", b"HTTP/1.1") == b"HTTP/1.1 200 OK"
    assert fast_body == slow_body
    answer = orjson.loads(fast_body)["response"]
    assert answer["uid"] == "same-uid" and answer["allowed"] is True
    for header in (b"content-type: application/json", f"content-length: {len(fast_body)}"):
        assert (header if isinstance(header, bytes) else header.encode()) in fast_headers
    assert b"connection: keep-alive" in fast_headers and b"date: " in fast_headers

    with context.wrap_socket(
        socket.create_connection((host, int(port)), timeout=10), server_hostname=host
    ) as tls:
        requests_ = [_raw_review(host, f"pipelined-{n}") for n in range(3)]
        tls.sendall(b"".join(head + body for head, body in requests_))
        buffered = bytearray()
        for n in range(3):
            status, headers, payload = read_response(tls, buffered)
            assert status == b"HTTP/1.1 200 OK" and b"connection: keep-alive" in headers
            assert orjson.loads(payload)["response"]["uid"] == f"pipelined-{n}"
        head, body = _raw_review(host, "last", extra="Connection: close\r\n")
        tls.sendall(head + body)
        status, headers, payload = read_response(tls, buffered)
        assert b"connection: close" in headers
        assert orjson.loads(payload)["response"]["uid"] == "last"
        assert tls.recv(1) == b""  # closed after the answer


def test_a_review_that_asks_the_cluster_nothing_needs_no_thread(make_server, tmp_path):
    """One worker, one thread, and a cluster that never answers: a review whose parent must be
    looked up holds the only thread for its lookup budget (1 s), yet a plain review sent after
    it is answered first, by the worker's loop itself; then the first is answered too."""
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog), never answers
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        orjson.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "silent",
                        "cluster": {
                            "server": f"https://127.0.0.1:{silent.getsockname()[1]}",
                            "insecure-skip-tls-verify": True,
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "silent", "user": "u"}}],
                "current-context": "c",
            }
        ).decode()
    )
    own = make_server("--workers", "1", "--threads", "1", "--kubeconfig", str(kubeconfig))
    context = ssl.create_default_context(cafile=own.ca_file)
    host, port = own.url.removeprefix("https://").rsplit(":", 1)

    def send(document: dict[str, object]) -> ssl.SSLSocket:
        tls = context.wrap_socket(
            socket.create_connection((host, int(port)), timeout=10), server_hostname=host
        )
        body = orjson.dumps(document)
        tls.sendall(
            f"POST /mutate HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        return tls

    try:
        with send(review(revision(), uid="waits")) as waiting:
            with send(review(secret(), uid="plain")) as plain:
                _, _, answer = read_response(plain, bytearray())
                assert orjson.loads(answer)["response"]["uid"] == "plain"
                waiting.setblocking(False)
                with pytest.raises(ssl.SSLWantReadError):
                    waiting.recv(1)  # still deciding: its lookup has not given up yet
                waiting.setblocking(True)
            _, _, answer = read_response(waiting, bytearray())
            assert orjson.loads(answer)["response"]["uid"] == "waits"
    finally:
        silent.close()
    lines = own.logs_until(lambda entry: entry.get("uid") == "waits" and "verdict" in entry)
    (line,) = [entry for entry in lines if entry.get("uid") == "waits" and "verdict" in entry]
    assert line["verdict"] == "patched"
    (failed,) = [entry for entry in lines if entry["msg"].startswith("parent lookup failed")]
    assert failed["uid"] == "waits"


# --- start-up and shutdown ----------------------------------------------------------------


def read_response(tls: ssl.SSLSocket, buffered: bytearray) -> tuple[bytes, bytes, bytes]:
    """(status line, lower-cased headers, body) of one HTTP/1.1 response with Content-Length."""
    while b"\r\n\r\n" not in buffered:
        chunk = tls.recv(65536)
        assert chunk, f"connection closed before a response: {bytes(buffered)!r}"
        buffered += chunk
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    status, _, headers = head.partition(b"\r\n")
    length = int(
        next(h for h in headers.lower().split(b"\r\n") if h.startswith(b"content-length")).split(
            b":"
        )[1]
    )
    while len(rest) < length:
        chunk = tls.recv(65536)
        assert chunk, "connection closed in the middle of a body"
        rest += chunk
    buffered[:] = rest[length:]
    return status, headers.lower(), rest[:length]


def test_sigterm_finishes_the_in_flight_review_then_exits_0(make_server):
    own = make_server("--workers", "1")
    context = ssl.create_default_context(cafile=own.ca_file)
    host, port = own.url.removeprefix("https://").rsplit(":", 1)
    with own.session() as session:
        good_request(own, session)  # answered before the signal

    def request_bytes(uid: str) -> tuple[bytes, bytes]:
        body = orjson.dumps(review(secret(), uid=uid))
        head = (
            f"POST /mutate HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head, body

    head, body = request_bytes("in-flight")
    tls = context.wrap_socket(
        socket.create_connection((host, int(port)), timeout=10), server_hostname=host
    )
    buffered = bytearray()
    try:
        tls.sendall(head + body[: len(body) // 2])  # the worker is now reading this body
        time.sleep(0.5)
        started = time.monotonic()
        own.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        tls.sendall(body[len(body) // 2 :])
        status, _, payload = read_response(tls, buffered)
        assert status == b"HTTP/1.1 200 OK"
        assert orjson.loads(payload)["response"]["uid"] == "in-flight"
        # A request arriving on the connection while the worker stops is still answered,
        # and the answer says the connection closes.
        head, body = request_bytes("after-signal")
        tls.sendall(head + body)
        status, headers, payload = read_response(tls, buffered)
        assert status == b"HTTP/1.1 200 OK"
        assert b"connection: close" in headers
        assert orjson.loads(payload)["response"]["uid"] == "after-signal"
        assert tls.recv(1) == b""  # then the server closes it
    finally:
        tls.close()
    assert own.process.wait(GRACEFUL_TIMEOUT + 5) == 0
    assert time.monotonic() - started < GRACEFUL_TIMEOUT + 3
    # Once stopped, nothing listens any more.
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2).close()


def _serve(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("kaptain-warden")
    return subprocess.run(
        [str(script), "serve", "--port", "0", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={"KAPTAIN_WARDEN_CACHE": str(cache), "PATH": "/usr/bin:/bin"},
    )


def test_invalid_policy_exits_1_with_the_loader_errors_before_any_worker(tmp_path, server_cache):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "apiVersion: warden.kaptain.io/v1alpha1\nkind: WardenPolicy\nrules:\n"
        "  - id: build-jobs\n    match: {kinds: [{apiVersion: batch/v1, kind: Job}]}\n"
        "    ttlAfterFinished: 7x\n"
    )
    result = _serve("--self-signed", "--policy", str(policy), cache=server_cache)
    assert result.returncode == 1
    assert f'{policy}: rules[0] (id "build-jobs").ttlAfterFinished:' in result.stderr
    assert "7x" in result.stderr
    assert "Booting worker" not in result.stderr and "listening" not in result.stdout


def test_tls_is_required(server_cache):
    result = _serve(cache=server_cache)
    assert result.returncode == 2
    assert "--self-signed" in result.stderr


def test_unusable_tls_files_exit_1(tmp_path, server_cache):
    cert = tmp_path / "tls.crt"
    cert.write_text("not a certificate")
    result = _serve(
        "--tls-cert-file", str(cert), "--tls-private-key-file", str(cert), cache=server_cache
    )
    assert result.returncode == 1
    assert f"cannot use {cert}" in result.stderr


def test_self_signed_material_is_reused_while_valid(server, make_server, server_cache):
    ca_file = Path(server.ca_file)
    assert ca_file.parent == server_cache / "self-signed"  # KAPTAIN_WARDEN_CACHE is honoured
    before = ca_file.read_bytes()
    again = make_server("--workers", "1")
    assert again.ca_file == server.ca_file
    assert ca_file.read_bytes() == before
    lines = again.logs_until(lambda line: "reusing the self-signed" in line.get("msg", ""))
    assert any("reusing the self-signed" in line.get("msg", "") for line in lines)
    assert again.stop() == 0
