"""Tier 1: the worker's selector loop on a kept-alive connection, turn by turn.

The loop answers a plain review itself (`DeadlineWorker._answer_now`); the connection stays
registered with the selector from one request to the next (no unregistering and registering
again per request), and the loop takes one turn per request unless bytes of the next request
are already read (pipelined), which it then answers on its next turn without waiting.
"""

from __future__ import annotations

import collections
import logging
import selectors
import socket
import ssl
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from kaptain_warden.webhook.app import Answer
from kaptain_warden.webhook.body_pool import SMALL_BODIES_IN_FLIGHT, BodyPool
from kaptain_warden.webhook.connections import Conn, ConnectionLimits
from kaptain_warden.webhook.worker import DeadlineWorker

ANSWER = b'{"answered":true}'


class _Socket:
    """A connected socket that behaves as a non-blocking TLS socket does for the loop: an
    empty read raises SSLWantReadError, and nothing is held decrypted (`pending` 0)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.reads = 0
        sock.setblocking(False)

    def recv(self, size: int) -> bytes:
        self.reads += 1
        try:
            return self._sock.recv(size)
        except BlockingIOError:
            raise ssl.SSLWantReadError("The operation did not complete (read)") from None

    def send(self, data: bytes) -> int:
        return self._sock.send(data)

    def pending(self) -> int:
        return 0

    def setblocking(self, flag: bool) -> None:
        assert not flag, "the loop never blocks on a client"

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()


class _Poller(selectors.DefaultSelector):
    """The worker's selector, counting what the loop asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        self.calls["register"] += 1
        return super().register(fileobj, events, data)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        self.calls["modify"] += 1
        return super().modify(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        self.calls["unregister"] += 1
        return super().unregister(fileobj)


def _route(body: bytes, _content_type: str | None, may_wait: bool) -> Answer | None:
    """Answers at once, except a body that asks to wait (a thread's then)."""
    if b"lookup" in body and not may_wait:
        return None
    return Answer(200, ANSWER)


def _worker() -> Any:
    """A DeadlineWorker's loop state without gunicorn's process around it."""
    worker: Any = DeadlineWorker.__new__(DeadlineWorker)
    worker.limits = ConnectionLimits()
    worker.cfg = SimpleNamespace(keepalive=30)
    worker.log = logging.getLogger("test-worker-loop")
    worker.alive = True
    worker.nr = 0
    worker.nr_conns = 1
    worker._waiting = set()
    worker._per_client = collections.Counter()
    worker._large = BodyPool(worker.limits.body_bytes_in_flight)
    worker._small = BodyPool(SMALL_BODIES_IN_FLIGHT)
    worker._admitting = worker._admit_again = False
    worker._decoding = 0
    worker._decode_queue = collections.deque()
    worker._stallers = collections.OrderedDict()
    worker._routes = {"/mutate": _route}
    worker._look_again = []
    worker.poller = _Poller()
    worker.threaded = []
    worker.enqueue_req = worker.threaded.append
    return worker


@pytest.fixture
def loop() -> Iterator[tuple[Any, Conn, socket.socket]]:
    """(worker, its connection past the TLS handshake, the client's end)."""
    ours, client = socket.socketpair()
    worker = _worker()
    conn = Conn(worker.cfg, _Socket(ours), ("127.0.0.1", 40000), ("127.0.0.1", 8443))
    conn.state = "head"
    worker._waiting.add(conn)
    worker._per_client[conn.address] += 1
    client.settimeout(5)
    try:
        yield worker, conn, client
    finally:
        worker.poller.close()
        client.close()
        ours.close()


def _request(body: bytes = b'{"kind":"AdmissionReview"}') -> bytes:
    return (
        b"POST /mutate?timeout=10s HTTP/1.1\r\nHost: warden\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def _answers(client: socket.socket, count: int) -> list[bytes]:
    data = b""
    while data.count(ANSWER) < count:
        chunk = client.recv(65536)
        assert chunk, "closed before the answers"
        data += chunk
    return [part for part in data.split(b"HTTP/1.1 ")[1:]]


def _settle(worker: Any, conn: Conn, client: socket.socket) -> None:
    """A first request answered, and the loop's look for more: nothing there, the connection
    waits in the selector."""
    client.sendall(_request())
    worker._advance(conn)  # as after the handshake
    assert len(_answers(client, 1)) == 1
    assert worker._look_again == [conn]  # not registered yet: its request came in one read
    worker._turn()
    assert worker._look_again == [] and conn.events == selectors.EVENT_READ


def test_a_kept_alive_connection_stays_registered_one_turn_per_request(loop) -> None:
    worker, conn, client = loop
    _settle(worker, conn, client)
    reads = conn.sock.reads
    for _ in range(5):
        client.sendall(_request())
        worker._turn()  # the selector says the next request is there; the loop answers it
        (answer,) = _answers(client, 1)
        assert answer.startswith(b"200 OK\r\n") and answer.endswith(ANSWER)
        assert b"Connection: keep-alive" in answer
        assert worker._look_again == []  # nothing already read: the selector says when
    assert worker.nr == 6
    assert conn.sock.reads - reads == 5  # one read a request: none that only finds nothing
    assert worker.poller.calls == {"register": 1}
    assert conn.state == "idle" and not conn.reserved
    assert worker._small.held == 0 and worker.threaded == []


def test_pipelined_requests_are_answered_on_the_next_turns_without_waiting(loop) -> None:
    worker, conn, client = loop
    _settle(worker, conn, client)
    client.sendall(_request() * 3)
    worker._turn()  # the first, then (the rest read already) the second on the same turn
    assert worker._look_again == [conn]  # the third is read: the selector cannot tell

    def wait(timeout: float) -> None:
        assert timeout == 0, "the loop waits although the next request is read already"

    worker.wait_for_and_dispatch_events = wait
    worker._turn()
    assert worker._look_again == []
    assert len(_answers(client, 3)) == 3
    assert conn.buffer == bytearray()


def test_a_review_for_a_thread_leaves_the_selector_until_the_thread_is_done(loop) -> None:
    worker, conn, client = loop
    _settle(worker, conn, client)
    client.sendall(_request(b'{"lookup":true}'))
    worker._turn()
    assert worker.threaded == [conn] and conn.state == "busy"
    assert worker.poller.calls == {"register": 1, "unregister": 1}  # the thread has it
    assert conn.events == 0


def test_the_loop_records_a_review_only_once_its_answer_is_sent(loop) -> None:
    """The log line and metrics (`Answer.record`) come after the answer's bytes have left: the
    API server waits for the answer, not for them."""
    worker, conn, client = loop
    _settle(worker, conn, client)
    seen: list[bytes] = []

    def record() -> None:
        client.setblocking(False)
        try:
            seen.append(client.recv(65536, socket.MSG_PEEK))
        except BlockingIOError:
            seen.append(b"")  # nothing sent yet
        finally:
            client.setblocking(True)

    worker._routes = {"/mutate": lambda *_: Answer(200, ANSWER, record)}
    client.sendall(_request())
    worker._turn()
    assert len(seen) == 1 and seen[0].endswith(ANSWER)  # recorded once, the answer out first
    assert len(_answers(client, 1)) == 1


def test_the_loop_records_a_review_whose_answer_could_not_be_sent(loop) -> None:
    worker, conn, client = loop
    _settle(worker, conn, client)
    recorded: list[str] = []
    worker._routes = {"/mutate": lambda *_: Answer(200, ANSWER, lambda: recorded.append("x"))}

    def broken(_data: bytes) -> int:
        raise ConnectionResetError("the API server went away")

    conn.sock.send = broken
    client.sendall(_request())
    worker._turn()
    assert recorded == ["x"] and conn.state == "closed"
