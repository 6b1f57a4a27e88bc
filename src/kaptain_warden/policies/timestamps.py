"""RFC 3339 timestamps as Kubernetes writes them: parsed strictly, formatted in UTC with `Z`."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta

__all__ = ["EARLIEST", "LATEST", "format_time", "parse_time"]

# The instants an object's timestamp may name. Anyone who can write an annotation chooses its
# value; `9999-12-31T23:59:59Z` is valid RFC 3339, but adding any TTL or retention age to it
# overflows Python's datetime (OverflowError). Every duration the policy allows is at most
# ten years, so arithmetic on anything inside this window stays inside datetime's range;
# anything outside it is no instant Kubernetes or the warden ever wrote.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)

# metav1.Time is written with Go's time.RFC3339 layout ("2006-01-02T15:04:05Z07:00"), and
# metav1.MicroTime / hand-written annotations (Knative's routingStateModified) may carry a
# fraction of up to nine digits (time.RFC3339Nano). Go's parser requires the "T" and a zone,
# so anything looser (a space separator, no zone, a date alone) is refused here as well:
# a timestamp we cannot read with certainty must never make something look old.
_RFC3339 = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"[Tt](?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})"
    r"(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<zone>[Zz]|(?P<sign>[+-])(?P<zh>\d{2}):(?P<zm>\d{2}))",
    re.ASCII,
)


def parse_time(value: object) -> datetime | None:
    """Parse a Kubernetes RFC 3339 timestamp into an aware UTC datetime.

    Accepts `2024-05-01T12:00:00Z`, a fraction of seconds (truncated to microseconds,
    Python's resolution) and numeric offsets (`+02:00`, converted to UTC). An aware
    `datetime` (what YAML loaders produce for timestamps) is converted to UTC. Anything
    else (None, empty, naive datetimes, malformed or out-of-range values, instants outside
    [EARLIEST, LATEST)) gives None.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return None  # naive: we cannot know which instant it names
        return _in_range(value.astimezone(UTC))
    if not isinstance(value, str):
        return None
    text = value.strip()
    return _parse(text) if len(text) <= _LONGEST else None


# The longest text _RFC3339 matches: a nine-digit fraction and a numeric offset.
_LONGEST = len("2024-05-01T12:00:00.123456789+02:00")


# Bounded (texts of at most _LONGEST characters): a review reads the same created-at and
# expires-at several times, the mutator and the validator within the same second.
@functools.lru_cache(maxsize=256)
def _parse(text: str) -> datetime | None:
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    fraction = (match["fraction"] or "").ljust(6, "0")[:6]
    try:
        parsed = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
            int(fraction),
            tzinfo=UTC,
        )
    except ValueError:
        return None  # e.g. month 13, second 60 (Go refuses leap seconds too)
    if match["sign"] is not None:
        hours, minutes = int(match["zh"]), int(match["zm"])
        if hours > 23 or minutes > 59:
            return None
        offset = timedelta(hours=hours, minutes=minutes)
        # The local time minus its offset is the UTC instant.
        try:
            parsed = parsed - offset if match["sign"] == "+" else parsed + offset
        except OverflowError:
            return None
    return _in_range(parsed)


def _in_range(instant: datetime) -> datetime | None:
    return instant if EARLIEST <= instant < LATEST else None


def format_time(dt: datetime) -> str:
    """Format an aware datetime as RFC 3339 in UTC with `Z` and whole seconds.

    This is the form the API server writes for metav1.Time; like Go's
    `time.Format(time.RFC3339)`, sub-second digits are truncated, not rounded.
    Raises ValueError for a naive datetime.
    """
    if dt.tzinfo is not UTC:  # every time the warden makes or parses is in UTC already
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise ValueError(f"format_time needs a timezone-aware datetime, got naive {dt!r}")
        dt = dt.astimezone(UTC)
    # Formatted by hand: strftime("%Y") does not zero-pad years before 1000 on glibc. `%`
    # takes half the time of an f-string with six format specs (a review formats two or three).
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (  # noqa: UP031
        dt.year,
        dt.month,
        dt.day,
        dt.hour,
        dt.minute,
        dt.second,
    )
