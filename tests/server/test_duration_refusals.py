"""Tier 2: a tenant's duration annotation can only be refused, clearly: never a 500, never a
non-ASCII digit taken for a number."""

from __future__ import annotations

import pytest

from factories import P, review, secret

HOSTILE = [
    pytest.param("\u0663d", "not a duration", id="arabic-indic-digit"),
    pytest.param("\uff11\uff10d", "not a duration", id="full-width-digits"),
    pytest.param("1" * 5000 + "d", "at most 32 characters", id="5000-digits"),
    pytest.param("9" * 31 + "s", "maximum", id="31-digits"),
]


@pytest.mark.parametrize(("value", "words"), HOSTILE)
def test_a_hostile_ttl_is_denied_with_a_reason(server, session, value, words):
    doc = review(secret(annotations={f"{P}/ttl": value}))
    response = server.post(session, "/validate", doc)
    assert response.status_code == 200, response.text
    answer = response.json()["response"]
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert f"annotation {P}/ttl" in message and words in message
    assert len(message) < 1000  # the 5,000 digits are not echoed back


@pytest.mark.parametrize(("value", "words"), HOSTILE)
def test_mutate_ignores_a_hostile_ttl_and_answers(server, session, value, words):
    response = server.post(session, "/mutate", review(secret(annotations={f"{P}/ttl": value})))
    assert response.status_code == 200, response.text
    assert response.json()["response"]["allowed"] is True
