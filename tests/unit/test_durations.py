"""Durations: the one format for ttl, ttlAfterFinished, maxTtl and retention ages."""

from datetime import timedelta

import pytest

from kaptain_warden.policies import durations
from kaptain_warden.policies.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("90m", timedelta(minutes=90)),
        ("36h", timedelta(hours=36)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        (" 24h ", timedelta(hours=24)),
        ("3650d", timedelta(days=3650)),
    ],
)
def test_valid_durations_parse(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("0s", "zero"),
        ("0h0m", "zero"),
        ("-5m", "negative"),
        ("7x", "not a duration"),
        ("1.5h", "not a duration"),
        ("30m1h", "not a duration"),  # units must be largest first
        ("1h1h", "not a duration"),
        ("h", "not a duration"),
        ("7 d", "not a duration"),
        ("3651d", "maximum"),
        ("99999999w", "maximum"),
        (None, "not a duration"),
        (42, "not a duration"),
        ("\u0663d", "not a duration"),  # Arabic-Indic digit
        ("\uff11\uff10d", "not a duration"),  # full-width digits
        ("7\u0663h", "not a duration"),
        ("1" * 5000 + "d", "at most 32 characters"),
        (" " * 40 + "1d", "at most 32 characters"),
        ("9" * 30 + "s", "maximum"),
    ],
)
def test_invalid_durations_are_refused_with_a_reason(value, fragment):
    with pytest.raises(DurationError, match=fragment) as info:
        parse_duration(value)
    assert "90m" in str(info.value) or "maximum" in str(info.value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(days=7), "7d"),
        (timedelta(weeks=2), "14d"),
        (timedelta(hours=36), "1d12h"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=24), "1d"),
    ],
)
def test_format_is_canonical_and_round_trips(value, text):
    assert format_duration(value) == text
    assert parse_duration(text) == value


def test_format_refuses_non_positive():
    with pytest.raises(DurationError):
        format_duration(timedelta(0))


def test_a_refused_duration_is_refused_every_time_and_a_parsed_one_is_cached() -> None:
    """Parsed durations are cached (texts of at most MAX_LENGTH characters); a refusal is not
    an answer the cache keeps: the same text is refused again, with the same reason."""
    for _ in range(2):
        with pytest.raises(DurationError, match="is zero"):
            parse_duration("0s")
        with pytest.raises(DurationError, match="at most 32 characters"):
            parse_duration("1" * 33 + "s")
    hits = durations._parse.cache_info().hits
    assert parse_duration("36h") == parse_duration("36h") == timedelta(hours=36)
    assert durations._parse.cache_info().hits > hits
