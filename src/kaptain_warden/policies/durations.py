"""The one duration format used everywhere: `90s`, `90m`, `36h`, `7d`, `2w`, `1h30m`."""

from __future__ import annotations

import functools
import re
from datetime import timedelta

_UNITS: dict[str, int] = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
# Units must appear largest first and at most once, as in Go's time.ParseDuration output.
# ASCII digits only: without re.ASCII, `\d` also matches Arabic-Indic or full-width digits,
# which int() reads but no operator would recognise in a manifest.
_PATTERN = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
# The longest legal duration, `520w6d23h59m59s` and the like, is far shorter; the bound
# refuses a tenant's thousands of digits before int() sees them (Python refuses to convert
# more than 4,300 digits with a plain ValueError, and big ints cost quadratic time).
MAX_LENGTH = 32
# Ten years: anything longer is a typo (`7000d`), not a retention decision.
MAX_DURATION = timedelta(days=3650)
ACCEPTED = (
    "a positive duration such as 90s, 90m, 36h, 7d, 2w or 1h30m "
    "(units w, d, h, m, s, largest first)"
)


class DurationError(ValueError):
    """A duration string that cannot be used; the message says why and what is accepted."""


def parse_duration(text: object) -> timedelta:
    """Parse a duration string into a positive timedelta, or raise DurationError."""
    if not isinstance(text, str):
        raise DurationError(f"{text!r} is not a duration: expected {ACCEPTED}")
    if len(text) > MAX_LENGTH:
        raise DurationError(
            f"{text[:MAX_LENGTH]!r}... ({len(text)} characters) is not a duration: "
            f"at most {MAX_LENGTH} characters, expected {ACCEPTED}"
        )
    return _parse(text)


# Bounded: only strings of at most MAX_LENGTH characters get here. A review reads the same few
# durations (the rule's defaults, the object's own) several times.
@functools.lru_cache(maxsize=256)
def _parse(text: str) -> timedelta:
    stripped = text.strip()
    if not stripped:
        raise DurationError(f"an empty string is not a duration: expected {ACCEPTED}")
    if stripped.startswith("-"):
        raise DurationError(f"{text!r} is negative: expected {ACCEPTED}")
    match = _PATTERN.fullmatch(stripped)
    if match is None:
        raise DurationError(f"{text!r} is not a duration: expected {ACCEPTED}")
    seconds = sum(
        int(value) * factor
        for value, factor in zip(match.groups(), _UNITS.values(), strict=True)
        if value is not None
    )
    if seconds == 0:
        raise DurationError(f"{text!r} is zero: expected {ACCEPTED}")
    if seconds > MAX_DURATION.total_seconds():
        raise DurationError(f"{text!r} is longer than the maximum of 3650d (ten years)")
    return timedelta(seconds=seconds)


@functools.lru_cache(maxsize=256)
def format_duration(value: timedelta) -> str:
    """The canonical string for a positive duration, largest units first: `1d12h`, `7d`, `1m30s`."""
    remaining = int(value.total_seconds())
    if remaining <= 0:
        raise DurationError(f"{value} is not positive")
    parts = []
    # Weeks are accepted on input but written as days: `7d` reads better than `1w` in a TTL.
    for unit, factor in _UNITS.items():
        if unit == "w":
            continue
        count, remaining = divmod(remaining, factor)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def describe_duration(value: timedelta, *, largest_units: int | None = None) -> str:
    """A duration for messages: `1d12h`, or with `largest_units=2` the two largest unit
    positions only, floored (`3d4h`, `3d` for 3d0h5m); `0s` under a second."""
    remaining = max(0, int(value.total_seconds()))
    amounts = []
    for unit, factor in _UNITS.items():
        if unit == "w":
            continue
        count, remaining = divmod(remaining, factor)
        amounts.append((count, unit))
    first = next((i for i, (count, _) in enumerate(amounts) if count), None)
    if first is None:
        return "0s"
    end = len(amounts) if largest_units is None else first + largest_units
    return "".join(f"{count}{unit}" for count, unit in amounts[first:end] if count)
