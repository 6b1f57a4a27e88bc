"""The body budget of a worker: bytes reserved for request bodies, and who waits for them."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kaptain_warden.webhook.connections import Conn

# Bodies up to this size (ordinary AdmissionReviews: a few KiB to tens of KiB) have an
# allowance of their own, so they never wait behind large ones...
SMALL_BODY_BYTES = 128 * 1024
# ...of this many bytes per worker (on top of --body-bytes-in-flight; in the memory formula of
# docs/operators/admission-server.md).
SMALL_BODIES_IN_FLIGHT = 2 * 1024 * 1024
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
STALLER_PENALTY_SECONDS = 60.0
STALLERS_REMEMBERED = 1024


class BodyPool:
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
        stall lately (`STALLER_PENALTY_SECONDS`), then those whose address holds least, then
        the oldest; nobody overtakes a body that does not fit yet. A staller's body gets only
        leftovers: its reservation is revoked as soon as another address's body needs it.
        Stallers from k addresses can make a large body wait k seconds once (per worker).
    A body being decided (all arrived) keeps its reservation: it is memory in use.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0
        self.by_address: collections.Counter[str] = collections.Counter()
        self.holders: set[Conn] = set()
        self.waiting: list[Conn] = []  # in arrival order

    def fits(self, conn: Conn) -> bool:
        if self.held == 0:
            return True
        return (
            self.held + conn.body <= self.capacity
            and self.by_address[conn.address] + conn.body <= self.capacity * _SHARE
        )

    def next_in_line(self, stalled: Callable[[str], bool]) -> Conn:
        """The body served next: not a staller's, its address holding least, the oldest."""
        return min(
            self.waiting, key=lambda c: (stalled(c.address), self.by_address[c.address])
        )  # min is stable: the oldest among equals

    def overdue(self, now: float, leftovers_only: Callable[[str], bool]) -> list[Conn]:
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

    def take(self, conn: Conn, now: float) -> None:
        self.waiting.remove(conn)
        conn.reserved = max(conn.body, 1)
        self.held += conn.reserved
        self.by_address[conn.address] += conn.reserved
        self.holders.add(conn)
        conn.granted_at = now

    def give_back(self, conn: Conn) -> None:
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
