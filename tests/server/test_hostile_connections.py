"""Tier 2: connections a tenant controls cannot starve the admission server, and a killed
arbiter takes its workers with it."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from warden_server import Server

from factories import review, secret
from polling import eventually

DEADLINE = 1.0  # the short handshake/header/body deadlines of the server under attack


@pytest.fixture(scope="module")
def guarded(make_server) -> Server:
    """2 workers x 4 threads (the chart's shape), with 1-second deadlines to keep tests short."""
    return make_server(
        "--workers",
        "2",
        "--threads",
        "4",
        "--handshake-timeout",
        str(DEADLINE),
        "--header-timeout",
        str(DEADLINE),
        "--body-timeout",
        str(DEADLINE),
        "--max-client-connections",
        "40",
    )


def address(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("https://").rsplit(":", 1)
    return host, int(port)


def tls_connection(server: Server, source: str = "127.0.0.1") -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=server.ca_file)
    raw = socket.create_connection(address(server), timeout=10, source_address=(source, 0))
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


@contextlib.contextmanager
def attackers(server: Server, count: int, payload: str) -> Iterator[list[socket.socket]]:
    """`count` connections from 127.0.0.2 that send `payload` and then nothing."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            if payload == "tls-byte":
                sock = socket.create_connection(
                    address(server), timeout=10, source_address=("127.0.0.2", 0)
                )
                sock.sendall(b"\x16")
            elif payload == "half-headers":
                sock = tls_connection(server, "127.0.0.2")
                sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: applic")
            elif payload == "half-body":
                sock = tls_connection(server, "127.0.0.2")
                sock.sendall(
                    b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 5000\r\n\r\n{"
                )
            else:  # nothing at all
                sock = socket.create_connection(
                    address(server), timeout=10, source_address=("127.0.0.2", 0)
                )
            held.append(sock)
        yield held
    finally:
        for sock in held:
            sock.close()


def timed_review(server: Server) -> float:
    """Seconds a good review takes on a fresh connection (a new connection: a new handshake)."""
    started = time.monotonic()
    with server.session() as session:
        doc = review(secret())
        answer = server.post(session, "/mutate", doc)
    assert answer.status_code == 200
    assert answer.json()["response"]["uid"] == doc["request"]["uid"]
    return time.monotonic() - started


@pytest.mark.parametrize(
    ("payload", "count"),
    [("tls-byte", 64), ("half-headers", 12), ("half-body", 12), ("nothing", 32)],
)
def test_stalled_connections_cost_no_thread(guarded, payload, count):
    """Each of these held every thread of the gthread worker: reviews waited as long as the
    attacker liked."""
    with attackers(guarded, count, payload):
        # The attackers are connected and stalled before the good reviews arrive.
        for _ in range(8):
            assert timed_review(guarded) < DEADLINE


@pytest.mark.parametrize("payload", ["tls-byte", "half-headers", "half-body", "nothing"])
def test_a_stalled_connection_is_closed_at_its_deadline(guarded, payload):
    with attackers(guarded, 1, payload) as (sock,):
        started = time.monotonic()
        sock.settimeout(10 * DEADLINE)
        with contextlib.suppress(ConnectionResetError, ssl.SSLError):
            assert sock.recv(1) == b""  # closed by the server, not by the test's timeout
        assert time.monotonic() - started < 5 * DEADLINE


def test_an_idle_kept_alive_connection_stays_open_and_costs_no_thread(guarded):
    """The API server's idle connections are kept (keepalive 30 s), beyond every deadline,
    and a worker full of them still answers on new connections."""
    sessions = [guarded.session() for _ in range(16)]
    try:
        for session in sessions:
            assert guarded.post(session, "/mutate", review(secret())).status_code == 200
        time.sleep(2 * DEADLINE)
        for session in sessions:  # every one reused: no new connection needed
            assert guarded.post(session, "/mutate", review(secret())).status_code == 200
        assert timed_review(guarded) < DEADLINE
    finally:
        for session in sessions:
            session.close()


def test_one_client_address_holds_a_bounded_number_of_connections(guarded):
    """Past --max-client-connections (40 per worker here), a client's new connections are
    refused; another client is not affected."""
    opened = []
    try:
        for _ in range(200):
            opened.append(
                socket.create_connection(
                    address(guarded), timeout=10, source_address=("127.0.0.2", 0)
                )
            )
        time.sleep(0.5)  # let both workers accept what they will
        alive = 0
        for sock in opened:
            sock.setblocking(False)
            try:
                alive += sock.recv(1) != b""
            except BlockingIOError:
                alive += 1  # nothing to read: still open
            except OSError:
                pass
        assert alive <= 2 * 40
        assert timed_review(guarded) < DEADLINE
    finally:
        for sock in opened:
            sock.close()


# --- a killed arbiter ---------------------------------------------------------------------


def seconds_until_bindable(port: int, since: float) -> float:
    """Seconds from `since` until a new listener can bind `port` (as gunicorn binds it)."""
    while True:
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            return time.monotonic() - since
        except OSError:
            assert time.monotonic() - since < 60, "the port stayed taken"
            time.sleep(0.01)
        finally:
            probe.close()


def test_a_killed_arbiter_takes_its_workers_with_it_and_a_restart_binds_at_once(make_server):
    """SIGKILL of the arbiter under load (keep-alive clients sending reviews, one client in
    the middle of a request): workers used to serve on for the graceful timeout, holding the
    port; now they die with the arbiter and a new server binds the port at once."""
    first = make_server("--workers", "2", "--graceful-timeout", "30")
    _, port = address(first)
    stop = threading.Event()
    answered = []

    def load() -> None:
        with first.session() as session:
            while not stop.is_set():
                with contextlib.suppress(requests.RequestException):
                    answered.append(first.post(session, "/mutate", review(secret())).status_code)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    with attackers(first, 2, "half-body"):
        while len(answered) < 50:
            time.sleep(0.01)

        def both_workers() -> list[str] | None:
            pgrep = subprocess.run(
                ["pgrep", "-P", str(first.process.pid)], capture_output=True, text=True, check=False
            )
            found = pgrep.stdout.split()
            return found if len(found) == 2 else None

        # gunicorn forks its workers one by one, up to 0.1 s apart: the first may have answered
        # the 50 reviews before the second exists.
        workers = eventually(both_workers, "both workers to be forked", timeout=10)
        killed = time.monotonic()
        first.process.kill()
        first.process.wait()
        free_after = seconds_until_bindable(port, killed)
        restarted = None
        while restarted is None:
            try:
                restarted = make_server("--workers", "2", "--port", str(port))
            except RuntimeError:
                assert time.monotonic() - killed < 60, "could not restart on the same port"
        elapsed = time.monotonic() - killed
        stop.set()
        for thread in threads:
            thread.join(15)
    assert timed_review(restarted) < DEADLINE
    print(
        f"\nkilled arbiter -> port free after {free_after:.2f} s, "
        f"a restarted server answering after {elapsed:.2f} s"
    )
    assert free_after < 5  # not the 30 s graceful timeout the workers used to wait

    assert [pid for pid in workers if not exited(int(pid))] == []
    assert restarted.stop() == 0


def exited(pid: int) -> bool:
    """Whether `pid` has exited: gone, or a zombie that whatever adopted it has not reaped yet
    (in a container, PID 1 may never reap the orphans of a killed arbiter)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The state follows the parenthesised command name, which may contain spaces.
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
