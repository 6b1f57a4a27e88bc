"""A gunicorn gthread worker whose threads only ever run the app: deadlines on every connection.

gunicorn's gthread worker hands a connection to a thread as soon as it is readable; the thread
then does the TLS handshake and reads the request line, headers and body with blocking reads
and no deadline. Eight connections that send one byte each, or stop in the middle of their
headers, hold all 2 x 4 threads, and every review waits behind them.

Here the worker's main loop (one selector) does all of that without blocking: the TLS handshake,
the request head and the whole body are read into a buffer, each phase under its own deadline;
only a complete request goes to a thread, whose parser reads that buffer and never the socket.
Idle kept-alive connections wait in the selector as well, so a connection costs a thread only
while the app decides. The number of connections a client address holds in one worker is
bounded (its oldest idle one gives way, else the new one is refused), and so are the body bytes
a worker holds at once (a body that does not fit waits, unread, for an earlier one to finish;
see `_BodyPool` for why a client that stalls cannot keep the others waiting), and so is what
the requests it decides at once may decode to (a costly one waits its turn, read).

When the arbiter dies the worker dies with it (SIGKILL from the kernel, PR_SET_PDEATHSIG), so
the port is free for a restart at once.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import os
import selectors
import signal
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from gunicorn import http, util
from gunicorn import sock as gsock
from gunicorn.http import wsgi
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

# The request line and headers of an AdmissionReview POST are a few hundred bytes; gunicorn's
# own limits (4094-byte line, 100 fields of 8190 bytes) are far above anything legitimate.
MAX_HEAD_BYTES = 64 * 1024
_READ_CHUNK = 64 * 1024
# What decoding a JSON body may cost in memory: its bytes, plus about this much for each value
# it holds (a Python object, its slot in a list or dict). Counted from the bytes that separate
# or open values, so a body of 2.8 million `[]` weighs what it will weigh once decoded.
_BYTES_PER_VALUE = 64
# Bodies up to this size (ordinary AdmissionReviews: a few KiB to tens of KiB) have an
# allowance of their own, so they never wait behind large ones...
SMALL_BODY_BYTES = 128 * 1024
# ...of this many bytes per worker (on top of --body-bytes-in-flight; in the memory formula of
# docs/operators/admission-server.md).
SMALL_BODIES_IN_FLIGHT = 2 * 1024 * 1024
# A request whose body decodes to at most this much (an ordinary review: tens to hundreds of
# KiB) is decided at once; a costlier one waits until the requests being decided in its worker
# add up, with it, to --decode-bytes-per-request (one always goes).
CHEAP_DECODE_BYTES = 1024 * 1024
# One client address holds at most this fraction of a pool (unless the pool is otherwise empty).
_SHARE = 0.5
# While another body waits for its pool, a reserved body loses its reservation (the connection
# is closed) once no byte of it has arrived for this long...
_SILENCE_SECONDS = 1.0
# ...or once it has not arrived whole within its lease: 2 s, plus its size at 4 MiB/s. The API
# server sends a review in one go at network speed; a sender short of CPU still makes
# progress; only a staller, or a client trickling bytes to look alive, is this slow.
_LEASE_SECONDS = 2.0
_LEASE_BYTES_PER_SECOND = 4 * 1024 * 1024
# An address whose reservation was revoked waits behind every other address for this long;
# the most recent this many such addresses are remembered.
_STALLER_PENALTY_SECONDS = 60.0
_STALLERS_REMEMBERED = 1024
_TOO_COSTLY = (
    b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)
# How often expired connections are looked for (the selector wakes at least this often).
_TICK_SECONDS = 0.1
# How often the loop tells the arbiter it is alive (a file's mtime: a system call). gunicorn's
# loop does it on every event, once per request; the arbiter only looks every few seconds and
# gives up after the worker timeout (30 s).
_NOTIFY_SECONDS = 1.0
# An answer up to this size goes out in one write, head and body together (see _Coalesced).
_COALESCE_BYTES = 256 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    """Deadlines and bounds of the worker; `WebhookSettings` fills them from `serve` flags."""

    handshake_seconds: float = 5.0
    header_seconds: float = 5.0
    body_seconds: float = 10.0
    write_seconds: float = 10.0
    keepalive_seconds: float = 30.0
    max_connections_per_client: int = 128
    body_bytes_in_flight: int = 8 * 1024 * 1024
    max_body_bytes: int = 8 * 1024 * 1024
    decode_bytes_per_request: int = 40 * 1024 * 1024


class _Conn(TConn):  # type: ignore[misc]
    """A connection and where it stands: handshake, head, body, busy (in a thread) or idle."""

    def __init__(self, cfg: Any, sock: Any, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.initialized = True  # the TLS wrap is ours; TConn.init must not wrap again
        self.state = "handshake"
        self.deadline = 0.0
        self.buffer = bytearray()
        self.needed = 0  # bytes of the current request (head + body) once the head is read
        self.body = 0  # bytes of the body, from Content-Length
        self.pool: _BodyPool | None = None  # where the body waits for, or holds, its bytes
        self.reserved = 0  # body bytes counted against the pool
        self.granted_at = 0.0  # when the pool granted the body its bytes
        self.arrived_at = 0.0  # when bytes last arrived
        self.cost = 0  # estimated decode cost counted against the worker's decode budget
        self.close_after = False  # answer, then close (the request was not read whole)
        self.keepalive = True  # the head arrived before the worker began to stop
        self.events = 0  # what the selector watches for (0: not registered)
        self.address = client[0] if isinstance(client, tuple) and client else str(client)


class _BodyPool:
    """Body bytes a worker holds at once for one size of body, and the bodies waiting for them.

    A body's bytes are reserved from its Content-Length before it is read, and given back when
    its answer is written. A body that does not fit waits, unread: its bytes stay in the kernel
    and the client's send blocks. That bounds memory, and reserving up front (rather than
    charging bytes as they arrive) means a body that got in can always finish: concurrent
    bodies each read in part could otherwise fill the pool with none able to complete.

    But a reservation is a promise the client may not keep: one that announces a few MiB and
    stalls would hold them for its whole body deadline while every other body waited, and the
    API server would give up on the webhook. So:
      - small bodies (ordinary reviews) have a pool of their own: they never wait behind large
        ones;
      - one client address holds at most half of a pool (one body always fits an empty pool):
        a single staller leaves the other half to the others;
      - while another address's body waits, a reservation whose body is silent
        (`_SILENCE_SECONDS`) or has not arrived within its lease (`_LEASE_SECONDS` + size at
        `_LEASE_BYTES_PER_SECOND`) is revoked, its connection closed: a staller holds what
        others need for a second, one that trickles bytes a few, not its body deadline;
      - the waiting bodies are served in fair order: first those of addresses that did not
        stall lately (`_STALLER_PENALTY_SECONDS`), then those whose address holds least, then
        the oldest; nobody overtakes a body that does not fit yet. A staller's body gets only
        leftovers: its reservation is revoked as soon as another address's body needs it.
        Stallers from k addresses can make a large body wait k seconds once (per worker).
    A body being decided (all arrived) keeps its reservation: it is memory in use.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0
        self.by_address: collections.Counter[str] = collections.Counter()
        self.holders: set[_Conn] = set()
        self.waiting: list[_Conn] = []  # in arrival order

    def fits(self, conn: _Conn) -> bool:
        if self.held == 0:
            return True
        return (
            self.held + conn.body <= self.capacity
            and self.by_address[conn.address] + conn.body <= self.capacity * _SHARE
        )

    def next_in_line(self, stalled: Callable[[str], bool]) -> _Conn:
        """The body served next: not a staller's, its address holding least, the oldest."""
        return min(
            self.waiting, key=lambda c: (stalled(c.address), self.by_address[c.address])
        )  # min is stable: the oldest among equals

    def overdue(self, now: float, leftovers_only: Callable[[str], bool]) -> list[_Conn]:
        """Holders whose body is still arriving but silent or past its lease, or that hold
        only leftovers."""
        return [
            c
            for c in self.holders
            if c.state == "body"
            and (
                leftovers_only(c.address)
                or now - max(c.granted_at, c.arrived_at) > _SILENCE_SECONDS
                or now - c.granted_at > _LEASE_SECONDS + c.body / _LEASE_BYTES_PER_SECOND
            )
        ]

    def take(self, conn: _Conn, now: float) -> None:
        self.waiting.remove(conn)
        conn.reserved = max(conn.body, 1)
        self.held += conn.reserved
        self.by_address[conn.address] += conn.reserved
        self.holders.add(conn)
        conn.granted_at = now

    def give_back(self, conn: _Conn) -> None:
        if conn in self.waiting:
            self.waiting.remove(conn)
        if conn in self.holders:
            self.holders.discard(conn)
            self.held -= conn.reserved
            self.by_address[conn.address] -= conn.reserved
            if self.by_address[conn.address] <= 0:
                del self.by_address[conn.address]
        conn.reserved = 0
        conn.pool = None


class _Coalesced:
    """The connection's socket as the response writer sees it: writes are gathered and sent
    in one `sendall` when the answer is complete (or past `_COALESCE_BYTES`).

    gunicorn sends the status line and headers, then the body, in two writes: two TLS records,
    two system calls, and a client (the API server) woken twice for one answer.
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._pending: list[bytes] = []
        self._size = 0

    def sendall(self, data: bytes) -> None:
        self._pending.append(bytes(data))
        self._size += len(data)
        if self._size > _COALESCE_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._size = 0
            self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _die_with_parent(ppid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); a no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != ppid:  # the parent died before the request took effect
        os._exit(1)


def _return_large_blocks() -> None:
    """Make glibc give every block over 128 KiB back to the kernel when it is freed (Linux).

    By default glibc raises its mmap threshold to the largest block freed so far (up to
    32 MiB): after the first large review, a decoded body's big blocks (the bytes, a dict's
    table) come from the heap of whichever thread decoded it, and stay there once freed. Each
    of the worker's threads then keeps its own high-water mark, and the worker grows past what
    the decode budget allows at once. A fixed threshold turns that adjustment off; ordinary
    reviews (a few KiB) are not affected.
    """
    if not sys.platform.startswith("linux"):
        return
    m_mmap_threshold = -3
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(m_mmap_threshold, 128 * 1024)


class DeadlineWorker(ThreadWorker):  # type: ignore[misc]
    """gthread with every read done by the selector loop under a deadline (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = getattr(self.app, "connection_limits", None)
        self.limits = limits if isinstance(limits, ConnectionLimits) else ConnectionLimits()
        self._waiting: set[_Conn] = set()  # every connection not in a thread
        self._per_client: collections.Counter[str] = collections.Counter()
        self._large = _BodyPool(self.limits.body_bytes_in_flight)
        self._small = _BodyPool(SMALL_BODIES_IN_FLIGHT)
        self._admitting = False
        self._admit_again = False
        # Decoding: what the requests being decided will take, and the costly ones waiting.
        self._decoding = 0
        self._decode_queue: collections.deque[_Conn] = collections.deque()
        # address -> when one of its reservations was last revoked, oldest first
        self._stallers: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._context: ssl.SSLContext | None = None
        self._context_key: tuple[int, ...] = ()
        self._next_sweep = 0.0
        self._next_notify = 0.0

    def init_process(self) -> None:
        _die_with_parent(self.ppid)
        _return_large_blocks()
        super().init_process()

    def notify(self) -> None:
        """Tell the arbiter this worker is alive, at most every `_NOTIFY_SECONDS`."""
        now = time.monotonic()
        if now >= self._next_notify:
            self._next_notify = now + _NOTIFY_SECONDS
            super().notify()

    # -- TLS ---------------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        """The serving context, rebuilt when the certificate or key file changes."""
        key: tuple[int, ...] = ()
        for path in (self.cfg.certfile, self.cfg.keyfile):
            try:
                stat = os.stat(path)
                key += (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            except OSError:
                key += (0, 0, 0)
        if self._context is None or key != self._context_key:
            self._context = gsock.ssl_context(self.cfg)
            self._context_key = key
        return self._context

    # -- accepting ---------------------------------------------------------------------------

    def accept(self, listener: Any) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            raise
        address = client_addr[0] if isinstance(client_addr, tuple) else str(client_addr)
        at_limit = self._per_client[address] >= self.limits.max_connections_per_client
        if at_limit and not self._evict_idle(address):
            self.log.debug("refusing a connection from %s: at its limit", address)
            util.close(client_sock)
            return
        client_sock.setblocking(False)
        try:
            tls = self._ssl_context().wrap_socket(
                client_sock,
                server_side=True,
                do_handshake_on_connect=False,
                suppress_ragged_eofs=True,
            )
        except (OSError, ssl.SSLError):
            util.close(client_sock)
            return
        conn = _Conn(self.cfg, tls, client_addr, listener.getsockname())
        self.nr_conns += 1
        self._per_client[conn.address] += 1
        self._waiting.add(conn)
        conn.deadline = time.monotonic() + self.limits.handshake_seconds
        self._advance(conn)

    def _evict_idle(self, address: str) -> bool:
        """Close the oldest idle connection of `address`; False when it has none."""
        idle = [c for c in self._waiting if c.address == address and c.state == "idle"]
        if not idle:
            return False
        self._close(min(idle, key=lambda c: c.deadline))
        return True

    # -- the state machine, on the main thread -----------------------------------------------

    def _on_event(self, conn: _Conn, _fileobj: Any) -> None:
        self._advance(conn)

    def _advance(self, conn: _Conn) -> None:
        """Move `conn` on as far as its bytes allow; wait in the selector for the rest."""
        try:
            if conn.state == "handshake":
                try:
                    conn.sock.do_handshake()
                except ssl.SSLWantReadError:
                    self._watch(conn, selectors.EVENT_READ)
                    return
                except ssl.SSLWantWriteError:
                    self._watch(conn, selectors.EVENT_WRITE)
                    return
                conn.state = "head"
                conn.deadline = time.monotonic() + self.limits.header_seconds
            if conn.state in ("head", "idle") and not self._read_head(conn):
                return
            if conn.state == "body" and not self._read_body(conn):
                return
        except (OSError, ValueError):
            if conn.state != "closed":
                self._close(conn)
            return
        if conn.state == "ready":
            self._dispatch(conn)

    def _recv(self, conn: _Conn, limit: int) -> bool | None:
        """Read what is there, up to `limit` bytes in the buffer: True when something was
        read, None when nothing is there yet (now watched), False when the peer is gone."""
        got = False
        while len(conn.buffer) < limit:
            try:
                chunk = conn.sock.recv(min(_READ_CHUNK, limit - len(conn.buffer)))
            except ssl.SSLWantReadError:
                self._watch(conn, selectors.EVENT_READ)
                return got or None
            except ssl.SSLWantWriteError:
                self._watch(conn, selectors.EVENT_WRITE)
                return got or None
            if not chunk:
                self._close(conn)
                return False
            conn.buffer += chunk
            conn.arrived_at = time.monotonic()
            got = True
        return True

    def _read_head(self, conn: _Conn) -> bool:
        if conn.buffer.find(b"\r\n\r\n") < 0:
            got = self._recv(conn, MAX_HEAD_BYTES)
            if got is False:
                return False
            if conn.state == "idle" and conn.buffer:
                # The first byte of the next request: the header deadline starts now.
                conn.state = "head"
                conn.deadline = time.monotonic() + self.limits.header_seconds
            if got is None:
                return False
        end = conn.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.buffer) >= MAX_HEAD_BYTES:
                self._close(conn)
            return False
        conn.keepalive = self.alive
        length = _content_length(bytes(conn.buffer[:end]))
        head = end + 4
        if length is None or length > 2 * self.limits.max_body_bytes:
            # Chunked, malformed, or too large to be worth reading: gunicorn's parser and the
            # app answer from the head alone (400, 411 or 413), then the connection closes.
            conn.needed, conn.close_after = head, True
            conn.state = "ready"
            return True
        conn.needed = head + length
        conn.body = length
        conn.state = "body"
        # Waiting for the body budget counts too: the default (10 s) is the API server's
        # default webhook timeout, past which nobody waits for the answer.
        conn.deadline = time.monotonic() + self.limits.body_seconds
        return True

    def _read_body(self, conn: _Conn) -> bool:
        if conn.body and not conn.reserved:
            if conn.pool is None:
                conn.pool = self._small if conn.body <= SMALL_BODY_BYTES else self._large
                conn.pool.waiting.append(conn)
            # Leave the bytes in the kernel until the pool grants them (`_admit` goes on).
            self._unwatch(conn)
            self._admit()
            return False
        if len(conn.buffer) < conn.needed:
            got = self._recv(conn, conn.needed)
            if got is not True or len(conn.buffer) < conn.needed:
                return False
        cost = _decode_cost(conn.buffer, conn.needed)
        if cost > self.limits.decode_bytes_per_request:
            self._refuse_costly(conn, cost)
            return False
        if cost > CHEAP_DECODE_BYTES:
            # Threads decide several requests at once: without this, bodies each under the
            # decode bound would together decode to several times it.
            conn.cost = cost
            self._decode_queue.append(conn)
            self._unwatch(conn)
            conn.state = "decode"
            return self._next_decodes(conn)
        conn.state = "ready"
        return True

    def _next_decodes(self, current: _Conn | None = None) -> bool:
        """Dispatch the costly requests that fit the decode budget, in arrival order, except
        `current` (the caller's to dispatch); whether `current` may go."""
        let_go = False
        while self._decode_queue:
            conn = self._decode_queue[0]
            budget = self.limits.decode_bytes_per_request
            if self._decoding and self._decoding + conn.cost > budget:
                break
            self._decode_queue.popleft()
            self._decoding += conn.cost
            conn.state = "ready"
            if conn is current:
                let_go = True
            else:
                self._dispatch(conn)
        return let_go

    def _refuse_costly(self, conn: _Conn, cost: int) -> None:
        """Answer 413 from here (the body would cost more memory to decode than allowed)."""
        body = (
            b'{"error":"the body would take about %d MiB to decode, over the limit of %d MiB; '
            b'an AdmissionReview is far smaller"}'
            % (cost >> 20, self.limits.decode_bytes_per_request >> 20)
        )
        self.log.warning("refusing a request body of %d bytes: too costly to decode", conn.needed)
        with contextlib.suppress(OSError):
            conn.sock.send(_TOO_COSTLY % (len(body), body))
        self._close(conn)

    def _dispatch(self, conn: _Conn) -> None:
        """Hand a complete request to a thread; leftover bytes wait for the next request."""
        self._unwatch(conn)
        self._waiting.discard(conn)
        # Head and body as separate pieces, each copied once: the parser takes the body as one
        # piece, and the buffer is let go at once (a large body would otherwise be held in
        # several copies while it is decoded).
        head_end = min(conn.buffer.find(b"\r\n\r\n") + 4, conn.needed)
        with memoryview(conn.buffer) as view:
            pieces = [bytes(view[:head_end]), bytes(view[head_end : conn.needed])]
        if len(conn.buffer) == conn.needed:
            conn.buffer = bytearray()
        else:
            del conn.buffer[: conn.needed]
        conn.parser = http.get_parser(self.cfg, [p for p in pieces if p], conn.client)
        conn.state = "busy"
        self.enqueue_req(conn)

    def _watch(self, conn: _Conn, events: int) -> None:
        callback = partial(self._on_event, conn)
        if conn.events == 0:
            self.poller.register(conn.sock, events, callback)
        elif conn.events != events:
            self.poller.modify(conn.sock, events, callback)
        conn.events = events

    def _unwatch(self, conn: _Conn) -> None:
        if conn.events:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
            conn.events = 0

    def _admit(self) -> None:
        """Grant waiting bodies their bytes in fair order, revoking overdue reservations that
        stand in the way (see `_BodyPool`), and read on the bodies granted."""
        if self._admitting:  # closing a connection below comes back here
            self._admit_again = True
            return
        self._admitting = True
        try:
            again = True
            while again:
                self._admit_again = False
                granted = [c for pool in (self._small, self._large) for c in self._grant(pool)]
                for conn in granted:
                    if conn.state == "body":
                        self._advance(conn)
                again = self._admit_again
        finally:
            self._admitting = False

    def _grant(self, pool: _BodyPool) -> list[_Conn]:
        granted = []
        now = time.monotonic()
        stalled = partial(self._stalled_lately, now=now)
        while pool.waiting:
            conn = pool.next_in_line(stalled)
            if not pool.fits(conn):
                # A staller's body does not take leftovers from another staller's, and an
                # address that waits for its own bodies waits: revoking is between clients.
                overdue = [
                    c
                    for c in pool.overdue(
                        now, (lambda _: False) if stalled(conn.address) else stalled
                    )
                    if c.address != conn.address
                ]
                if not overdue:
                    break
                for holder in overdue:
                    self._stallers[holder.address] = now
                    self._stallers.move_to_end(holder.address)
                    if len(self._stallers) > _STALLERS_REMEMBERED:
                        self._stallers.popitem(last=False)
                    self.log.warning(
                        "closing a connection from %s: %d of its %d body bytes arrived in "
                        "%.1f s, and other bodies wait for the memory it holds",
                        holder.address,
                        len(holder.buffer) - (holder.needed - holder.body),
                        holder.body,
                        now - holder.granted_at,
                    )
                    self._close(holder)
                continue
            pool.take(conn, now)
            granted.append(conn)
        return granted

    def _stalled_lately(self, address: str, now: float) -> bool:
        revoked = self._stallers.get(address)
        return revoked is not None and now - revoked < _STALLER_PENALTY_SECONDS

    def _release(self, conn: _Conn) -> None:
        if conn in self._decode_queue:
            self._decode_queue.remove(conn)
        if conn.state in ("ready", "busy") and conn.cost:
            self._decoding -= conn.cost
            conn.cost = 0
            self._next_decodes()
        conn.cost = 0
        if conn.pool is not None:
            conn.pool.give_back(conn)
            self._admit()

    def _close(self, conn: _Conn) -> None:
        self._unwatch(conn)
        self._release(conn)
        if conn in self._waiting:
            self._waiting.discard(conn)
        self._per_client[conn.address] -= 1
        if self._per_client[conn.address] <= 0:
            del self._per_client[conn.address]
        self.nr_conns -= 1
        conn.state = "closed"
        util.close(conn.sock)

    def _expire(self, force: bool = False) -> None:
        """Close every waiting connection past its deadline (all of them with `force`), and
        revoke overdue reservations that waiting bodies need."""
        now = time.monotonic()
        for conn in [c for c in self._waiting if force or c.deadline <= now]:
            self._close(conn)
        if self._small.waiting or self._large.waiting:
            self._admit()

    # -- in a thread: only the app ---------------------------------------------------------

    def handle(self, conn: _Conn) -> bool:
        req = None
        try:
            # Blocking writes, bounded: a client that does not read its answer is dropped.
            conn.sock.settimeout(self.limits.write_seconds)
            req = next(conn.parser)
            if not req:
                return False
            keepalive = self.handle_request(req, conn)
            return bool(keepalive and not conn.close_after and conn.parser.finish_body())
        except (http.errors.NoMoreData, StopIteration):
            return False
        except ssl.SSLError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, None):
                self.log.exception("Socket error processing request.")
            return False
        except Exception as exc:
            self.handle_error(req, conn.sock, conn.client, exc)
            return False

    def handle_request(self, req: Any, conn: _Conn) -> bool:
        environ: dict[str, Any] = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            started = datetime.now()
            out = _Coalesced(conn.sock)
            resp, environ = wsgi.create(req, out, conn.client, conn.server, self.cfg)
            environ["wsgi.multithread"] = True
            self.nr += 1  # (max_requests is not used: no autorestart here)
            # A request whose head arrived before the worker began to stop keeps its
            # connection (one more request may still come, answered with close).
            if not conn.keepalive or not self.cfg.keepalive or conn.close_after:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                for item in respiter:
                    resp.write(item)
                resp.close()
                out.flush()
            finally:
                self.log.access(resp, req, environ, datetime.now() - started)
                if hasattr(respiter, "close"):
                    respiter.close()
            return not resp.should_close()
        except OSError:
            raise
        except (Exception, SystemExit):
            if resp is not None and resp.headers_sent:
                self.log.exception("Error handling request")
                util.close_graceful(conn.sock)
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")

    # -- back on the main thread -------------------------------------------------------------

    def finish_request(self, conn: _Conn, fs: Any) -> None:
        self._release(conn)
        try:
            keep = bool(fs.result()) if not fs.cancelled() else False
        except Exception:
            keep = False
        if conn.state == "closed":
            return
        if not keep:
            self._close(conn)
            return
        try:
            conn.sock.setblocking(False)
        except OSError:
            self._close(conn)
            return
        conn.state = "idle"
        conn.close_after = False
        conn.needed = conn.body = 0
        linger = self.limits.keepalive_seconds if self.alive else STOP_KEEPALIVE_LINGER
        conn.deadline = time.monotonic() + min(self.limits.keepalive_seconds, linger)
        self._waiting.add(conn)
        # TLS may hold bytes of the next request already read from the socket: look now.
        self._advance(conn)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        self.poller.register(
            self.method_queue.fileno(), selectors.EVENT_READ, self.method_queue.run_callbacks
        )
        self.set_accept_enabled(True)
        while self.alive:
            self.notify()
            can_accept = self.nr_conns < self.worker_connections
            if can_accept != self._accepting:
                self.set_accept_enabled(can_accept)
            self.wait_for_and_dispatch_events(timeout=_TICK_SECONDS)
            if not self.is_parent_alive():
                # No arbiter to hand over to: leave at once, so a restart can bind.
                self._expire(force=True)
                return
            self._expire()

        self.set_accept_enabled(False)
        stop_by = time.monotonic() + STOP_KEEPALIVE_LINGER
        for conn in self._waiting:
            if conn.state == "idle":
                conn.deadline = min(conn.deadline, stop_by)
        graceful = time.monotonic() + self.cfg.graceful_timeout
        while self.nr_conns > 0 and time.monotonic() < graceful:
            self.notify()
            self.wait_for_and_dispatch_events(timeout=_TICK_SECONDS)
            if not self.is_parent_alive():
                break
            self._expire()
        self._expire(force=True)
        self.tpool.shutdown(wait=False)
        self.poller.close()
        self.method_queue.close()
        for listener in self.sockets:
            listener.close()


def _decode_cost(buffer: bytearray, end: int) -> int:
    """About how many bytes decoding the body (up to `end`) takes: bytes + values x 64."""
    start = buffer.find(b"\r\n\r\n") + 4
    values = sum(buffer.count(c, start, end) for c in (b",", b":", b"[", b"{"))
    return (end - start) + values * _BYTES_PER_VALUE


def _content_length(head: bytes) -> int | None:
    """The Content-Length of a request head; None when chunked, absent on a body, or malformed."""
    length: int | None = 0
    seen = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            text = value.strip()
            if seen or not text.isdigit() or len(text) > 12:
                return None
            length, seen = int(text), True
    return length
