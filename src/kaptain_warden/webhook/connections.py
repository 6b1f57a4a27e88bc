"""A connection as the worker's selector loop sees it, the worker's limits, and what a request's
head and body say before the app sees them (the body's length, what decoding it would cost)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gunicorn.workers.gthread import TConn

if TYPE_CHECKING:
    from kaptain_warden.webhook.app import ReviewRoute
    from kaptain_warden.webhook.body_pool import BodyPool

# The request line and headers of an AdmissionReview POST are a few hundred bytes; gunicorn's
# own limits (4094-byte line, 100 fields of 8190 bytes) are far above anything legitimate.
MAX_HEAD_BYTES = 64 * 1024
# What decoding a JSON body may cost in memory: its bytes, plus about this much for each value
# it holds (a Python object, its slot in a list or dict). Counted from the bytes that separate
# or open values, so a body of 2.8 million `[]` weighs what it will weigh once decoded.
_BYTES_PER_VALUE = 64


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


class Conn(TConn):  # type: ignore[misc]
    """A connection and where it stands: handshake, head, body, busy (in a thread) or idle."""

    def __init__(self, cfg: Any, sock: Any, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.initialized = True  # the TLS wrap is ours; TConn.init must not wrap again
        self.state = "handshake"
        self.deadline = 0.0
        self.buffer = bytearray()
        self.needed = 0  # bytes of the current request (head + body) once the head is read
        self.body = 0  # bytes of the body, from Content-Length
        self.pool: BodyPool | None = None  # where the body waits for, or holds, its bytes
        self.reserved = 0  # body bytes counted against the pool
        self.granted_at = 0.0  # when the pool granted the body its bytes
        self.arrived_at = 0.0  # when bytes last arrived
        self.cost = 0  # estimated decode cost counted against the worker's decode budget
        self.close_after = False  # answer, then close (the request was not read whole)
        self.keepalive = True  # the head arrived before the worker began to stop
        self.events = 0  # what the selector watches for (0: not registered)
        self.address = client[0] if isinstance(client, tuple) and client else str(client)
        # What the current request's head says when it is a plain review (`review_head`).
        self.plain: ReviewHead | None = None
        # A review answered without gunicorn's parser (see `answering.Answering.handle`).
        self.review: Review | None = None
        # What the loop could not write of an answer at once, and whether to keep the
        # connection after it (a thread writes it).
        self.unsent: tuple[bytes, bool] | None = None


@dataclass(frozen=True)
class Review:
    """A complete review request, read by the loop, for a thread to answer."""

    route: ReviewRoute
    body: bytes
    content_type: str | None
    keepalive: bool


# A header name as HTTP defines it (a token); a head with any other goes to gunicorn's parser.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class ReviewHead:
    """What the head of a plain review POST says: the path, the media type, keep-alive, and
    the body's length."""

    path: str
    content_type: str | None
    keepalive: bool
    length: int


def review_head(head: bytes) -> ReviewHead | None:
    """The head (up to, without, its blank line) of an `HTTP/1.1` `POST` with one
    Content-Length and no Transfer-Encoding, Expect or Upgrade, whose every header line is a
    token, a colon and a value; None for anything else (gunicorn's parser and the app answer
    that, as for every other request, framed by `content_length`). Where it gives a head, its
    length is the one `content_length` reads: one pass over the head serves both."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"POST" or parts[2] != b"HTTP/1.1":
        return None
    path = parts[1].partition(b"?")[0]  # the API server adds ?timeout=10s
    content_type: str | None = None
    keepalive = True
    length: int | None = None
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            return None
        name = name.lower()
        if name == b"content-length":
            text = value.strip()
            if length is not None or not _is_length(text):
                return None
            length = int(text)
        elif name == b"content-type":
            if content_type is not None:
                return None
            content_type = value.strip(b" \t").decode("latin-1")
        elif name == b"connection":
            keepalive = b"close" not in {t.strip(b" \t").lower() for t in value.split(b",")}
        elif name in (b"transfer-encoding", b"expect", b"upgrade"):
            return None
    if length is None:
        return None
    return ReviewHead(path.decode("latin-1"), content_type, keepalive, length)


def _is_length(text: bytes) -> bool:
    """A Content-Length value (stripped) the worker reads: digits, at most 12 of them."""
    return text.isdigit() and len(text) <= 12


def most_decode_cost(body: int) -> int:
    """The most decoding a body of `body` bytes can take, without reading it: each value
    `decode_cost` counts takes at least one byte of the body."""
    return body * (1 + _BYTES_PER_VALUE)


def decode_cost(buffer: bytearray, end: int) -> int:
    """About how many bytes decoding the body (up to `end`) takes: bytes + values x 64."""
    start = buffer.find(b"\r\n\r\n") + 4
    values = sum(buffer.count(c, start, end) for c in (b",", b":", b"[", b"{"))
    return (end - start) + values * _BYTES_PER_VALUE


def content_length(head: bytes) -> int | None:
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
            if seen or not _is_length(text):
                return None
            length, seen = int(text), True
    return length
