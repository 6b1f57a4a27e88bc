"""Logging set-up shared by every component: JSON lines in production, key=value text locally."""

from __future__ import annotations

import functools
import logging
import sys
import time
from typing import Any, TextIO

import orjson

# Attributes every LogRecord has; anything else on a record came from `extra=` and is a field.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}


@functools.lru_cache(maxsize=4)
def _second(seconds: int) -> str:
    # strftime is the slowest part of a line; one formatting per second is enough.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def _timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 UTC with milliseconds: `2026-05-01T12:00:00.123Z`."""
    return f"{_second(int(record.created))}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the `extra` fields, and exc if any."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a single JSON line (tracebacks go into the `exc` field)."""
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(_extra_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        # default=str: an unexpected value in `extra` must never make a log line vanish.
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: msg key=value ...` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` on one line, followed by its traceback when there is one."""
        fields = " ".join(f"{k}={v}" for k, v in _extra_fields(record).items())
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if fields:
            line = f"{line}  {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure_logging(
    level: str | int = "INFO", *, json: bool, stream: TextIO | None = None
) -> None:
    """Send every logger's records to `stream` (stderr) as JSON lines or text, at `level`.

    Replaces the root logger's handlers, so calling it twice does not duplicate lines.
    """
    # Neither format shows the caller, thread or process: skip gathering them for every record
    # (the logging HOWTO's "Optimization" section). The admission server logs every review.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
