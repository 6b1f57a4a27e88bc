"""Tier 1: the worker sends an answer in one write (head and body together)."""

from __future__ import annotations

from kaptain_warden.webhook import answering


class _Socket:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(data)

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", 1)


def test_head_and_body_go_out_in_one_write() -> None:
    sock = _Socket()
    out = answering.Coalesced(sock)
    out.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
    out.sendall(b"{}")
    assert sock.writes == []
    out.flush()
    assert sock.writes == [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"]
    out.flush()
    assert len(sock.writes) == 1
    assert out.getpeername() == ("127.0.0.1", 1)  # everything else is the socket's


def test_a_large_answer_is_not_held_whole() -> None:
    sock = _Socket()
    out = answering.Coalesced(sock)
    chunk = b"x" * (answering.COALESCE_BYTES // 2 + 1)
    out.sendall(chunk)
    out.sendall(chunk)
    assert sock.writes == [chunk + chunk]  # sent once past the bound, not buffered on
    out.sendall(b"tail")
    out.flush()
    assert sock.writes[-1] == b"tail"
