"""Tier 2: clients that announce or send a large body and then stall cannot starve the others.

A worker holds at most --body-bytes-in-flight of request bodies, reserved from Content-Length
before the body is read. A client that announced a few MiB and then stalled used to hold that
reservation for the whole --body-timeout while every other body waited, unread, behind it: the
API server gave up on the webhook (its timeoutSeconds) and failurePolicy decided. Now small
bodies (ordinary reviews) have an allowance of their own, a client address holds at most half
of a pool, and a body that has not arrived within its lease while another body waits loses its
reservation (the connection is closed).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import orjson
import pytest
from warden_server import Server

from factories import review, secret

# The API server's webhook timeout may be as short as 1 s (the chart's is 5 s); an honest
# review has to be answered well within it while the attack goes on.
PROMPT = 1.0
# Above the small-body allowance: what a large object's review (an UPDATE carries two copies)
# looks like.
LARGE_HONEST = 1024 * 1024
CHART_TIMEOUT = 5.0  # the chart's webhook.timeoutSeconds
BUDGET = 8 * 1024 * 1024  # the default --body-bytes-in-flight (and --max-body-bytes)


@pytest.fixture(scope="module")
def budgeted(make_server) -> Server:
    """The chart's shape and the default deadlines and budget (10 s for a body, 8 MiB)."""
    return make_server("--workers", "2", "--threads", "4")


@pytest.fixture(scope="module")
def patient(make_server) -> Server:
    """The same, but a body may take a minute: a staller is cut by the body budget or not at
    all, never by its own body deadline (on a loaded machine, setting up 12 stallers and 12
    reviews can take longer than the default 10 s)."""
    return make_server("--workers", "2", "--threads", "4", "--body-timeout", "60")


def address(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("https://").rsplit(":", 1)
    return host, int(port)


class Staller:
    """One connection from `source` that announces `length` body bytes, sends `sent` of them
    (from a thread: the server may leave them unread) and then nothing."""

    def __init__(self, server: Server, source: str, length: int, sent: int) -> None:
        context = ssl.create_default_context(cafile=server.ca_file)
        raw = socket.create_connection(address(server), timeout=10, source_address=(source, 0))
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.sock.settimeout(None)
        self.sock.sendall(
            b"POST /validate HTTP/1.1\r\nHost: warden\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % length
        )
        self.thread = threading.Thread(target=self._send, args=(b"[" + b" " * (sent - 1),))
        self.thread.start()

    def _send(self, body: bytes) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.sock.sendall(body)

    def closed_by_server(self) -> bool:
        """Whether the server closed the connection: whatever it sent, then end of file."""
        with socket.socket(fileno=os.dup(self.sock.fileno())) as raw:
            raw.setblocking(False)
            while True:
                try:
                    if raw.recv(65536) == b"":
                        return True
                except BlockingIOError:
                    return False
                except OSError:
                    return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(10)
        self.sock.close()


@contextlib.contextmanager
def stallers(
    server: Server, sources: list[str], count: int, length: int, sent: int
) -> Iterator[list[Staller]]:
    held: list[Staller] = []
    try:
        for number in range(count):
            held.append(Staller(server, sources[number % len(sources)], length, sent))
        yield held
    finally:
        for staller in held:
            staller.close()


def timed_review(server: Server, body: bytes) -> float:
    """Seconds a review takes on a fresh connection (either worker may take it)."""
    started = time.monotonic()
    with server.session() as session:
        answer = session.post(
            server.url + "/validate",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["response"]["allowed"] is True
    return time.monotonic() - started


def small_review() -> bytes:
    return orjson.dumps(review(secret(payload_bytes=2400)))  # ~5 KB, an ordinary review


def large_review() -> bytes:
    body = orjson.dumps(review(secret(payload_bytes=LARGE_HONEST * 3 // 4)))
    assert len(body) > LARGE_HONEST
    return body


@pytest.mark.parametrize("sent", ["announced", "sent but the last byte"])
def test_large_stalled_bodies_do_not_keep_an_ordinary_review_waiting(patient, sent):
    """12 connections announce bodies of nearly 8 MiB (under the size limit) and stall, with
    or without sending them: each worker's whole budget is taken. Ordinary reviews on new
    connections are still answered at once (they used to wait the stallers' body deadline)."""
    length = BUDGET - 100
    count = 1 if sent == "announced" else length - 1
    with stallers(patient, ["127.0.0.2"], 12, length, count) as held:
        took = [timed_review(patient, small_review()) for _ in range(12)]
        cut = sum(s.closed_by_server() for s in held)
    assert max(took) < PROMPT, took
    # The attack went on all along: nobody had to cut the stallers (their body deadline, a
    # minute here, is out of reach), so the reviews were prompt because small bodies do not
    # wait behind large ones.
    assert cut == 0


def test_a_large_honest_review_gets_in_when_stallers_from_many_addresses_hold_the_budget(
    budgeted,
):
    """Stallers from 2 addresses announce bodies as large as the budget, 4 each, and send half.
    A 1 MiB review (over the small-body allowance, so it needs the shared budget) gets it once
    the stallers in its way have been silent for 1 s, instead of waiting out their 10 s body
    deadlines one after the other; they are cut, and from then on their addresses' bodies wait
    behind the others' (in that worker)."""
    length = BUDGET - 100
    with stallers(budgeted, ["127.0.0.2", "127.0.0.3"], 8, length, length // 2) as held:
        took = [timed_review(budgeted, large_review()) for _ in range(12)]
        cut = sum(s.closed_by_server() for s in held)
    assert max(took) < CHART_TIMEOUT, took
    # Each staller address holds up each of the 2 workers once; then the reviews go first.
    assert sorted(took)[-5] < PROMPT, took
    assert cut >= 1
