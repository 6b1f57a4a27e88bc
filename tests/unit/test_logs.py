"""JSON-lines and text log formatting: every `extra` field reaches the line."""

from __future__ import annotations

import io
import logging
import os
import sys

import orjson

from kaptain_warden.logs import BatchingHandler, JsonFormatter, TextFormatter, configure_logging


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


def test_batching_handler_writes_every_line_in_order_and_flush_waits(tmp_path):
    target = (tmp_path / "log.jsonl").open("w")
    handler = BatchingHandler(target, interval=0.5)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("kaptain_warden.test.batching")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        for i in range(500):
            log.info("line %d", i, extra={"n": i})
        handler.flush()  # must not wait for the 0.5 s interval to see everything written
        lines = (tmp_path / "log.jsonl").read_text().splitlines()
    finally:
        log.removeHandler(handler)
        target.close()
    assert [orjson.loads(line)["n"] for line in lines] == list(range(500))
    assert orjson.loads(lines[0])["msg"] == "line 0"


def test_batching_handler_starts_a_writer_in_a_forked_child(tmp_path):
    path = tmp_path / "log.jsonl"
    target = path.open("w")
    handler = BatchingHandler(target)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("kaptain_warden.test.fork")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.info("parent")
    handler.flush()
    pid = os.fork()
    if pid == 0:  # the child: as a gunicorn worker does after the arbiter configured logging
        log.info("child")
        handler.flush()
        os._exit(0)
    os.waitpid(pid, 0)
    log.removeHandler(handler)
    target.close()
    assert [orjson.loads(line)["msg"] for line in path.read_text().splitlines()] == [
        "parent",
        "child",
    ]
