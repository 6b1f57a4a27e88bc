"""The thread side of the worker: run the app on a complete request, and write its answer in
one go."""

from __future__ import annotations

import email.utils
import errno
import functools
import ssl
import time
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from typing import Any

from gunicorn import http, util
from gunicorn.http import wsgi

from kaptain_warden.webhook.connections import Conn, ConnectionLimits, Review

# An answer up to this size goes out in one write, head and body together (see Coalesced).
COALESCE_BYTES = 256 * 1024


class Coalesced:
    """The connection's socket as the response writer sees it: writes are gathered and sent
    in one `sendall` when the answer is complete (or past `COALESCE_BYTES`).

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
        if self._size > COALESCE_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._size = 0
            self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


_FAILED = b'{"error":"internal error"}'
# errno values of a client that closed or reset its connection (None: no errno at all).
_CLIENT_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, None)


@functools.lru_cache(maxsize=2)
def _date(second: int) -> bytes:
    return email.utils.formatdate(second, usegmt=True).encode("latin-1")


@functools.lru_cache(maxsize=32)
def _phrase(status: int) -> bytes:
    return HTTPStatus(status).phrase.encode("latin-1")


def answer_bytes(status: int, body: bytes, *, keepalive: bool) -> bytes:
    """A JSON answer, head and body, as gunicorn writes one (without its Server header)."""
    return b"HTTP/1.1 %d %s\r\nDate: %s\r\nConnection: %s\r\n%s%d\r\n\r\n%s" % (
        status,
        _phrase(status),
        _date(int(time.time())),
        b"keep-alive" if keepalive else b"close",
        b"Content-Type: application/json\r\nContent-Length: ",
        len(body),
        body,
    )


class Answering:
    """What a worker thread does with a connection: only the app (the selector loop read the
    request). Mixed into `DeadlineWorker`, which provides the attributes below."""

    cfg: Any
    log: Any
    limits: ConnectionLimits
    nr: int
    wsgi: Any
    handle_error: Callable[..., None]

    def handle(self, conn: Conn) -> bool:
        if conn.unsent is not None:
            return self._send_rest(conn, *conn.unsent)
        if conn.review is not None:
            return self._answer_review(conn, conn.review)
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
        except OSError as exc:
            return self._dropped(exc)
        except Exception as exc:
            self.handle_error(req, conn.sock, conn.client, exc)
            return False

    def _send_rest(self, conn: Conn, data: bytes, keepalive: bool) -> bool:
        """Write what the loop could not send of an answer at once (`_answer_now`)."""
        conn.unsent = None
        try:
            conn.sock.settimeout(self.limits.write_seconds)
            conn.sock.sendall(data)
            return keepalive
        except OSError:  # ssl.SSLError included: a client that does not read is dropped
            return False

    def _answer_review(self, conn: Conn, review: Review) -> bool:
        """Answer a review the loop read whole and `connections.review_head` found plain:
        the app's route, then head and body in one write; whether to keep the connection."""
        conn.review = None
        keepalive = review.keepalive and conn.keepalive and bool(self.cfg.keepalive)
        try:
            conn.sock.settimeout(self.limits.write_seconds)
            self.nr += 1
            try:
                answer = review.route(review.body, review.content_type, True)
                assert answer is not None  # a route that may wait always answers
            except Exception:
                # The routes answer every body (refusals included); this is a bug.
                self.log.exception("Error handling request")
                conn.sock.sendall(answer_bytes(500, _FAILED, keepalive=False))
                return False
            try:
                conn.sock.sendall(answer_bytes(answer.status, answer.body, keepalive=keepalive))
            finally:
                answer.record()  # once the API server has its answer (see `Answer.record`)
            return keepalive
        except OSError as exc:
            return self._dropped(exc)

    def _dropped(self, exc: OSError) -> bool:
        """A connection lost while answering: close it (False). Logged unless the client just
        went away or its TLS failed (nothing to act on)."""
        if not isinstance(exc, ssl.SSLError) and exc.errno not in _CLIENT_GONE:
            self.log.exception("Socket error processing request.")
        return False

    def handle_request(self, req: Any, conn: Conn) -> bool:
        environ: dict[str, Any] = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            started = datetime.now()
            out = Coalesced(conn.sock)
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
