"""Tier 1: RFC 3339 parsing and formatting as Kubernetes writes timestamps."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaptain_warden.policies import timestamps
from kaptain_warden.policies.timestamps import format_time, parse_time


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)),
        ("2024-05-01t12:00:00z", datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)),
        # metav1.MicroTime / RFC3339Nano: up to nine digits, truncated to microseconds.
        ("2024-05-01T12:00:00.5Z", datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        ("2024-05-01T12:00:00.123456Z", datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2024-05-01T12:00:00.123456789Z", datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        # Offsets are converted to UTC.
        ("2024-05-01T14:30:00+02:30", datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)),
        ("2024-05-01T07:00:00-05:00", datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)),
        ("2024-01-01T00:30:00+01:00", datetime(2023, 12, 31, 23, 30, 0, tzinfo=UTC)),
        # Surrounding whitespace from hand-edited annotations is tolerated.
        (" 2024-05-01T12:00:00Z\n", datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)),
        # An aware datetime (what YAML loaders give) is accepted and moved to UTC.
        (
            datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
            datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        ),
    ],
)
def test_parse_time_accepts_kubernetes_forms(raw: object, expected: datetime) -> None:
    parsed = parse_time(raw)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "not a time",
        "2024-05-01",  # a date alone
        "2024-05-01T12:00:00",  # no zone: which instant?
        "2024-05-01 12:00:00Z",  # Go's RFC3339 layout requires the T
        "2024-05-01T12:00Z",  # no seconds
        "2024-13-01T12:00:00Z",  # month 13
        "2024-02-30T12:00:00Z",  # no such day
        "2024-05-01T24:00:00Z",
        "2024-05-01T12:00:60Z",  # leap second: Go refuses it too
        "2024-05-01T12:00:00.Z",  # empty fraction
        "2024-05-01T12:00:00.1234567890Z",  # ten fraction digits
        "2024-05-01T12:00:00+0200",  # offset without colon
        "2024-05-01T12:00:00+24:00",
        "0000-01-01T00:00:00Z",  # year 0 does not exist in Python
        "0001-01-01T00:00:00+01:00",  # before datetime.min once converted
        "9999-12-31T23:59:59Z",  # + any TTL overflows datetime: outside the window
        "9000-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "1714564800",  # epoch seconds (Knative's old lastPinned) is not RFC 3339
        "\uff12\uff10\uff12\uff14-05-01T12:00:00Z",  # fullwidth (non-ASCII) digits
        1714564800,
        True,
        datetime(2024, 5, 1, 12, 0),  # naive
        ["2024-05-01T12:00:00Z"],
    ],
)
def test_parse_time_rejects_everything_else(raw: object) -> None:
    assert parse_time(raw) is None


@pytest.mark.parametrize(
    ("dt", "expected"),
    [
        (datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC), "2024-05-01T12:00:00Z"),
        (datetime(2024, 5, 1, 12, 0, 0, 999999, tzinfo=UTC), "2024-05-01T12:00:00Z"),
        (
            datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2))),
            "2024-05-01T12:00:00Z",
        ),
        (datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "0999-01-02T03:04:05Z"),
    ],
)
def test_format_time(dt: datetime, expected: str) -> None:
    assert format_time(dt) == expected


def test_format_time_refuses_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(datetime(2024, 5, 1, 12, 0))


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(8999, 12, 31),
        timezones=st.just(UTC),
    )
)
def test_round_trip_to_the_second(dt: datetime) -> None:
    assert parse_time(format_time(dt)) == dt.replace(microsecond=0)


def test_parse_time_reads_padded_text_and_refuses_overlong_text_uncached() -> None:
    """Parsed texts are cached, bounded by the longest form the format allows: padding is
    stripped first, and anything longer is refused without taking a cache entry."""
    padded = " " * 1000 + "2024-05-01T12:00:00.123456789+02:00" + "\n" * 1000
    assert parse_time(padded) == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    before = timestamps._parse.cache_info().currsize
    assert parse_time("2024-05-01T12:00:00.1234567890+02:00") is None  # ten digits
    assert parse_time("2024-05-01T12:00:00Z" + "x" * 10_000) is None
    assert timestamps._parse.cache_info().currsize == before
    # The same text again gives the same answer (from the cache).
    assert parse_time("2024-05-01T12:00:00Z") == parse_time("2024-05-01T12:00:00Z")
