"""Logging set-up shared by every component: JSON lines in production, key=value text locally."""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import sys
import threading
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


class _Flush:
    """A marker the writer answers by setting `done` once everything before it is written."""

    def __init__(self) -> None:
        self.done = threading.Event()


class BatchingHandler(logging.Handler):
    """Collects records; one writer thread per process formats and writes them in batches.

    The admission server logs every review from several threads. A plain StreamHandler makes
    each of them take the handler lock, format, and issue a write system call; a queue that
    wakes a writer per record costs a thread switch per record instead. Here a request thread
    only appends the record to a deque, and the writer drains it every `interval` seconds, so
    under load one write carries many lines. The writer starts with the first record of each
    process (gunicorn configures logging before it forks its workers, and threads do not
    survive a fork). `flush()`, which `logging.shutdown` calls at exit, writes everything
    appended so far before it returns.
    """

    def __init__(
        self, stream: TextIO, *, interval: float = 0.05, flush_timeout: float = 5.0
    ) -> None:
        super().__init__()
        self._stream = stream
        self._interval = interval
        self._flush_timeout = flush_timeout
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._pending: collections.deque[logging.LogRecord | _Flush] = collections.deque()
        self._wake = threading.Event()
        self._started_in: int | None = None
        self._start_lock = threading.Lock()

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and append, without the per-handler lock a StreamHandler takes."""
        accepted = bool(self.filter(record))
        if accepted:
            self.emit(record)
        return accepted

    def emit(self, record: logging.LogRecord) -> None:
        """Append `record` for this process's writer thread (deque.append is thread-safe)."""
        if self._started_in != os.getpid():
            self._start()
        self._pending.append(record)

    def _start(self) -> None:
        with self._start_lock:
            if self._started_in == os.getpid():
                return
            threading.Thread(target=self._write_forever, name="log-writer", daemon=True).start()
            self._started_in = os.getpid()

    def _write_forever(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            batch = []
            while self._pending:
                batch.append(self._pending.popleft())
            lines = []
            for item in batch:
                if isinstance(item, logging.LogRecord):
                    try:
                        lines.append(self.format(item) + "\n")
                    except Exception:
                        self.handleError(item)
            if lines:
                # A stream that cannot be written (a closed stderr) leaves nowhere to report it.
                with contextlib.suppress(OSError, ValueError):
                    self._stream.write("".join(lines))
                    self._stream.flush()
            for item in batch:
                if isinstance(item, _Flush):
                    item.done.set()

    def flush(self) -> None:
        """Wait (a bounded time) until every record appended so far has been written."""
        if self._started_in != os.getpid():
            return
        marker = _Flush()
        self._pending.append(marker)
        self._wake.set()
        marker.done.wait(self._flush_timeout)


def configure_logging(
    level: str | int = "INFO",
    *,
    json: bool,
    stream: TextIO | None = None,
    batched: bool = False,
) -> None:
    """Send every logger's records to `stream` (stderr) as JSON lines or text, at `level`.

    `batched`: write from one thread per process in batches (`BatchingHandler`), for servers
    that log every request. Replaces the root logger's handlers, so calling it twice does not
    duplicate lines.
    """
    # Neither format shows the caller, thread or process: skip gathering them for every record
    # (the logging HOWTO's "Optimization" section). The admission server logs every review.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    target = stream or sys.stderr
    handler: logging.Handler = BatchingHandler(target) if batched else logging.StreamHandler(target)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
