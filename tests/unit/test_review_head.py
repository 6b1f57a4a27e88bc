"""Tier 1: which request heads the worker answers as plain reviews, without gunicorn's parser."""

from __future__ import annotations

import pytest

from kaptain_warden.webhook.connections import (
    ReviewHead,
    content_length,
    decode_cost,
    most_decode_cost,
    review_head,
)

PLAIN = (
    b"POST /mutate?timeout=10s HTTP/1.1\r\n"
    b"Host: warden.kaptain.svc:443\r\n"
    b"User-Agent: kube-apiserver-admission\r\n"
    b"Content-Length: 1234\r\n"
    b"Accept: application/json, */*\r\n"
    b"Content-Type: application/json\r\n"
    b"Accept-Encoding: gzip"
)


def test_the_api_servers_head_is_a_plain_review() -> None:
    assert review_head(PLAIN) == ReviewHead(
        "/mutate", "application/json", keepalive=True, length=1234
    )


def test_connection_close_is_kept() -> None:
    head = PLAIN + b"\r\nConnection: keep-alive, Close"
    assert review_head(head) == ReviewHead(
        "/mutate", "application/json", keepalive=False, length=1234
    )


def test_no_content_type_is_passed_on_for_the_app_to_refuse() -> None:
    head = PLAIN.replace(b"Content-Type: application/json\r\n", b"")
    assert review_head(head) == ReviewHead("/mutate", None, keepalive=True, length=1234)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(PLAIN.replace(b"POST", b"GET", 1), id="not-post"),
        pytest.param(PLAIN.replace(b"HTTP/1.1", b"HTTP/1.0", 1), id="http-1.0"),
        pytest.param(PLAIN.replace(b"/mutate?timeout=10s ", b"/mutate  ", 1), id="two-spaces"),
        pytest.param(PLAIN.replace(b"Content-Length: 1234\r\n", b""), id="no-length"),
        pytest.param(PLAIN + b"\r\nContent-Length: 1234", id="two-lengths"),
        pytest.param(PLAIN + b"\r\nTransfer-Encoding: chunked", id="chunked"),
        pytest.param(PLAIN + b"\r\nExpect: 100-continue", id="expect"),
        pytest.param(PLAIN + b"\r\nUpgrade: h2c", id="upgrade"),
        pytest.param(PLAIN + b"\r\nContent-Type: text/yaml", id="two-content-types"),
        pytest.param(PLAIN + b"\r\n folded continuation", id="obs-fold"),
        pytest.param(PLAIN + b"\r\nBad Name: x", id="space-in-name"),
        pytest.param(PLAIN + b"\r\nno colon here", id="no-colon"),
        pytest.param(PLAIN + b"\r\n: empty name", id="empty-name"),
        pytest.param(PLAIN.replace(b": 1234", b": 12x4"), id="length-not-digits"),
        pytest.param(PLAIN.replace(b": 1234", b": -1"), id="length-negative"),
        pytest.param(PLAIN.replace(b": 1234", b": " + b"9" * 13), id="length-13-digits"),
        pytest.param(PLAIN.replace(b": 1234", b":"), id="length-empty"),
    ],
)
def test_anything_else_goes_to_gunicorns_parser(head: bytes) -> None:
    assert review_head(head) is None


@pytest.mark.parametrize(
    "head",
    [
        PLAIN,
        PLAIN.replace(b": 1234", b":   0  "),
        PLAIN.replace(b": 1234", b": 000000000042"),
        PLAIN.replace(b": 1234", b": 12x4"),
        PLAIN + b"\r\nContent-Length: 1234",
        PLAIN + b"\r\nTransfer-Encoding: chunked",
        PLAIN.replace(b"Content-Length: 1234\r\n", b""),
    ],
)
def test_a_plain_reviews_length_is_the_one_the_worker_frames_every_request_by(
    head: bytes,
) -> None:
    """The worker frames a plain review by `review_head`'s length and anything else by
    `content_length`: where both read a head, they agree."""
    found = review_head(head)
    if found is not None:
        assert found.length == content_length(head)


@pytest.mark.parametrize(
    "body",
    [b"", b"{}", b"[" * 4096, b",:[{" * 1024, b'{"a":[1,2,{"b":[]}]}' * 100, bytes(range(256)) * 8],
)
def test_what_decoding_a_body_may_cost_is_bounded_by_its_size(body: bytes) -> None:
    """The worker skips scanning a body whose size alone keeps it within the decode bounds."""
    head = b"POST /mutate HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body)
    buffer = bytearray(head + body)
    assert decode_cost(buffer, len(buffer)) <= most_decode_cost(len(body))
