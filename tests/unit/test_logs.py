"""JSON-lines and text log formatting: every `extra` field reaches the line."""

from __future__ import annotations

import io
import logging
import sys

import orjson

from kaptain_warden.logs import JsonFormatter, TextFormatter, configure_logging


def record(**extra: object) -> logging.LogRecord:
    made = logging.LogRecord(
        "kaptain_warden.x", logging.INFO, __file__, 1, "hello %s", ("you",), None
    )
    made.__dict__.update(extra)
    return made


def test_json_line_has_the_standard_fields_and_the_extras():
    line = orjson.loads(JsonFormatter().format(record(uid="u-1", duration_ms=0.5)))
    assert line["level"] == "INFO" and line["logger"] == "kaptain_warden.x"
    assert line["msg"] == "hello you"
    assert line["ts"].endswith("Z") and "T" in line["ts"]
    assert (line["uid"], line["duration_ms"]) == ("u-1", 0.5)
    assert "args" not in line and "levelno" not in line


def test_json_line_carries_the_traceback_and_survives_odd_values():
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    failed.__dict__["thing"] = object()
    line = orjson.loads(JsonFormatter().format(failed))
    assert "ValueError: boom" in line["exc"]
    assert line["thing"].startswith("<object")


def test_text_line_shows_the_extras():
    assert TextFormatter().format(record(uid="u-1")).endswith("hello you  uid=u-1")


def test_configure_logging_replaces_handlers():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("debug", json=True, stream=stream)
        configure_logging("debug", json=True, stream=stream)
        logging.getLogger("kaptain_warden.test").debug("once", extra={"k": 1})
        (line,) = stream.getvalue().splitlines()
        assert orjson.loads(line)["k"] == 1
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
