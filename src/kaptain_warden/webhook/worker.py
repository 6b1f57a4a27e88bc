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
see `body_pool.BodyPool` for why a client that stalls cannot keep the others waiting), and so
is what the requests it decides at once may decode to (a costly one waits its turn, read).

When the arbiter dies the worker dies with it (SIGKILL from the kernel, PR_SET_PDEATHSIG), so
the port is free for a restart at once.

Here: the selector loop and the state machine of a connection. Beside it: `connections` (a
connection, the limits, what a head and body say), `body_pool` (the body budget),
`answering` (the thread side: the app and its answer), `process` (the process and the kernel).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import selectors
import ssl
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from gunicorn import http, util
from gunicorn import sock as gsock
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, ThreadWorker

from kaptain_warden.webhook.answering import Answering, answer_bytes
from kaptain_warden.webhook.app import ReviewRoute, review_routes
from kaptain_warden.webhook.body_pool import (
    SMALL_BODIES_IN_FLIGHT,
    SMALL_BODY_BYTES,
    STALLER_PENALTY_SECONDS,
    STALLERS_REMEMBERED,
    BodyPool,
)
from kaptain_warden.webhook.connections import (
    MAX_HEAD_BYTES,
    Conn,
    ConnectionLimits,
    Review,
    content_length,
    decode_cost,
    most_decode_cost,
    review_head,
)
from kaptain_warden.webhook.process import die_with_parent, return_large_blocks

__all__ = ["ConnectionLimits", "DeadlineWorker"]

_READ_CHUNK = 64 * 1024
# A review whose body is at most this large (an ordinary one: a few KiB) and that asks the
# cluster nothing is answered by the loop itself (`_answer_now`): deciding it takes well
# under a millisecond.
ANSWER_NOW_BYTES = 64 * 1024
# A request whose body decodes to at most this much (an ordinary review: tens to hundreds of
# KiB) is decided at once; a costlier one waits until the requests being decided in its worker
# add up, with it, to --decode-bytes-per-request (one always goes).
CHEAP_DECODE_BYTES = 1024 * 1024
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


def _tls_pending(conn: Conn) -> bool:
    """Whether TLS holds decrypted bytes of `conn` not read yet (the selector cannot see them)."""
    try:
        return bool(conn.sock.pending())
    except (OSError, ValueError):
        return True  # let `_advance` find out what is wrong


class DeadlineWorker(Answering, ThreadWorker):  # type: ignore[misc]
    """gthread with every read done by the selector loop under a deadline (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = getattr(self.app, "connection_limits", None)
        self.limits = limits if isinstance(limits, ConnectionLimits) else ConnectionLimits()
        self._waiting: set[Conn] = set()  # every connection not in a thread
        self._per_client: collections.Counter[str] = collections.Counter()
        self._large = BodyPool(self.limits.body_bytes_in_flight)
        self._small = BodyPool(SMALL_BODIES_IN_FLIGHT)
        self._admitting = False
        self._admit_again = False
        # Decoding: what the requests being decided will take, and the costly ones waiting.
        self._decoding = 0
        self._decode_queue: collections.deque[Conn] = collections.deque()
        # address -> when one of its reservations was last revoked, oldest first
        self._stallers: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._context: ssl.SSLContext | None = None
        self._context_key: tuple[int, ...] = ()
        self._next_sweep = 0.0
        self._next_notify = 0.0
        self._routes: Mapping[str, ReviewRoute] = {}  # set in run(), once the app is loaded
        self._look_again: list[Conn] = []  # answered by the loop, maybe with more to read

    def init_process(self) -> None:
        die_with_parent(self.ppid)
        return_large_blocks()
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
        conn = Conn(self.cfg, tls, client_addr, listener.getsockname())
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

    def _on_event(self, conn: Conn, _fileobj: Any) -> None:
        self._advance(conn)

    def _advance(self, conn: Conn) -> None:
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

    def _recv(self, conn: Conn, limit: int, *, head: bool = False) -> bool | None:
        """Read what is there, up to `limit` bytes in the buffer (with `head`, only until the
        head is whole: the body waits for its budget): True when something was read, None when
        nothing is there yet (now watched), False when the peer is gone."""
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
            if head and conn.buffer.find(b"\r\n\r\n") >= 0:
                break  # no read that would only find nothing more (a raised SSLWantReadError)
        return True

    def _read_head(self, conn: Conn) -> bool:
        if conn.buffer.find(b"\r\n\r\n") < 0:
            got = self._recv(conn, MAX_HEAD_BYTES, head=True)
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
        head_bytes = bytes(conn.buffer[:end])
        conn.plain = review_head(head_bytes)
        length = conn.plain.length if conn.plain is not None else content_length(head_bytes)
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

    def _read_body(self, conn: Conn) -> bool:
        if conn.body and not conn.reserved:
            if conn.pool is None:
                conn.pool = self._small if conn.body <= SMALL_BODY_BYTES else self._large
                conn.pool.waiting.append(conn)
                if len(conn.pool.waiting) == 1 and conn.pool.fits(conn):
                    # Nobody waits before it and it fits: granted at once, as `_admit` would,
                    # without leaving the selector and coming back.
                    conn.pool.take(conn, time.monotonic())
            if not conn.reserved:
                # Leave the bytes in the kernel until the pool grants them (`_admit` goes on).
                self._unwatch(conn)
                self._admit()
                return False
        if len(conn.buffer) < conn.needed:
            got = self._recv(conn, conn.needed)
            if got is not True or len(conn.buffer) < conn.needed:
                return False
        if most_decode_cost(conn.body) <= min(
            CHEAP_DECODE_BYTES, self.limits.decode_bytes_per_request
        ):
            # Within both bounds whatever it holds (an ordinary review): no need to scan it.
            conn.state = "ready"
            return True
        cost = decode_cost(conn.buffer, conn.needed)
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

    def _next_decodes(self, current: Conn | None = None) -> bool:
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

    def _refuse_costly(self, conn: Conn, cost: int) -> None:
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

    def _dispatch(self, conn: Conn) -> None:
        """Answer a complete request here (`_answer_now`) or hand it to a thread; leftover
        bytes wait for the next request. The connection stays registered with the selector
        while the loop answers it (its next request is read the same way)."""
        self._waiting.discard(conn)
        # Head and body as separate pieces, each copied once (the head only for gunicorn's
        # parser: a plain review needs its body alone): the parser takes the body as one
        # piece, and the buffer is let go at once (a large body would otherwise be held in
        # several copies while it is decoded).
        head_end = min(conn.buffer.find(b"\r\n\r\n") + 4, conn.needed)
        with memoryview(conn.buffer) as view:
            body = bytes(view[head_end : conn.needed])
            conn.review = self._review(conn, body)
            head = bytes(view[:head_end]) if conn.review is None else b""
        if len(conn.buffer) == conn.needed:
            conn.buffer = bytearray()
        else:
            del conn.buffer[: conn.needed]
        if conn.review is None:
            conn.parser = http.get_parser(self.cfg, [p for p in (head, body) if p], conn.client)
        conn.state = "busy"
        if (
            conn.review is not None
            and len(conn.review.body) <= ANSWER_NOW_BYTES
            and not conn.cost  # a costly decode is a thread's (and ends in `_next_decodes`)
            and self._answer_now(conn, conn.review)
        ):
            return
        self._unwatch(conn)  # a thread has it until `finish_request`
        self.enqueue_req(conn)

    def _answer_now(self, conn: Conn, review: Review) -> bool:
        """Answer a small review here, on the loop's thread, when deciding it asks the cluster
        nothing: the hand-off to a thread and back costs two thread wake-ups per review, each
        waiting for a core on a busy node. False: a thread answers it (it may wait on a
        lookup, or deciding failed). The loop never blocks on the client: what the socket does
        not take at once, a thread writes under the write deadline."""
        try:
            answer = review.route(review.body, review.content_type, False)
        except Exception:
            return False  # the thread's answer says what failed
        if answer is None:
            return False
        conn.review = None
        self.nr += 1
        keepalive = review.keepalive and conn.keepalive and bool(self.cfg.keepalive)
        data = answer_bytes(answer.status, answer.body, keepalive=keepalive)
        try:
            sent = conn.sock.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0  # OpenSSL wants the same bytes again: the thread sends them all
        except OSError:
            self._close(conn)
            return True
        finally:
            answer.record()  # the log line and metrics, once the API server has its answer
        if sent < len(data):
            conn.unsent = (data[sent:], keepalive)
            self._unwatch(conn)
            self.enqueue_req(conn)
            return True
        self._release(conn)
        self._after_answer(conn, keepalive, from_thread=False)
        return True

    def _review(self, conn: Conn, body: bytes) -> Review | None:
        """A review the app answers from its body alone (`app.review_routes`), to be answered
        without gunicorn's parser, WSGI environ and response (they cost about half as much as
        deciding the review); None for any other request."""
        if conn.close_after or len(body) > self.limits.max_body_bytes:
            return None
        found = conn.plain
        route = self._routes.get(found.path) if found is not None else None
        if found is None or route is None:
            return None
        return Review(route, body, found.content_type, found.keepalive)

    def _watch(self, conn: Conn, events: int) -> None:
        callback = partial(self._on_event, conn)
        if conn.events == 0:
            self.poller.register(conn.sock, events, callback)
        elif conn.events != events:
            self.poller.modify(conn.sock, events, callback)
        conn.events = events

    def _unwatch(self, conn: Conn) -> None:
        if conn.events:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
            conn.events = 0

    def _admit(self) -> None:
        """Grant waiting bodies their bytes in fair order, revoking overdue reservations that
        stand in the way (see `BodyPool`), and read on the bodies granted."""
        if self._admitting:  # closing a connection below comes back here
            self._admit_again = True
            return
        if not self._small.waiting and not self._large.waiting:
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

    def _grant(self, pool: BodyPool) -> list[Conn]:
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
                    if len(self._stallers) > STALLERS_REMEMBERED:
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
        return revoked is not None and now - revoked < STALLER_PENALTY_SECONDS

    def _release(self, conn: Conn) -> None:
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

    def _close(self, conn: Conn) -> None:
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

    # -- back on the main thread -------------------------------------------------------------

    def finish_request(self, conn: Conn, fs: Any) -> None:
        self._release(conn)
        try:
            keep = bool(fs.result()) if not fs.cancelled() else False
        except Exception:
            keep = False
        self._after_answer(conn, keep, from_thread=True)

    def _after_answer(self, conn: Conn, keep: bool, *, from_thread: bool) -> None:
        """Close `conn`, or keep it idle for its next request; bytes of that request may be
        read already (in the buffer, or held by TLS): after a thread, look at once; after the
        loop answered inside its own `_advance`, on the loop's next turn, and only when such
        bytes are there (else the selector, which still watches the socket, says when)."""
        if conn.state == "closed":
            return
        if not keep:
            self._close(conn)
            return
        if from_thread:  # the thread's writes were blocking, with a deadline
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
        # TLS may hold bytes of the next request already read from the socket: look.
        if from_thread:
            self._advance(conn)
        elif conn.buffer or conn.events != selectors.EVENT_READ or _tls_pending(conn):
            self._look_again.append(conn)

    # -- the loop ----------------------------------------------------------------------------

    def _turn(self) -> None:
        """Dispatch the selector's events, and look at the connections answered last turn."""
        self.wait_for_and_dispatch_events(timeout=0 if self._look_again else _TICK_SECONDS)
        again, self._look_again = self._look_again, []
        for conn in again:
            if conn.state == "idle":
                self._advance(conn)

    def run(self) -> None:
        self._routes = review_routes(self.wsgi)
        self.poller.register(
            self.method_queue.fileno(), selectors.EVENT_READ, self.method_queue.run_callbacks
        )
        self.set_accept_enabled(True)
        while self.alive:
            self.notify()
            can_accept = self.nr_conns < self.worker_connections
            if can_accept != self._accepting:
                self.set_accept_enabled(can_accept)
            self._turn()
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
            self._turn()
            if not self.is_parent_alive():
                break
            self._expire()
        self._expire(force=True)
        self.tpool.shutdown(wait=False)
        self.poller.close()
        self.method_queue.close()
        for listener in self.sockets:
            listener.close()
