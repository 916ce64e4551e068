"""Structured process logs: one parseable line per event, whatever the event carries."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from zlog.config import LogConfig
from zlog.ops.logs import setup_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_json_lines_carry_the_fields_and_survive_awkward_values(restore_root: None) -> None:
    out = io.StringIO()
    setup_logging(LogConfig(level="info", format="json"), "storage", stream=out, worker=1)
    log = logging.getLogger("zlog.test")
    log.info("multi\nline", extra={"partition": 3, "blob": b"\xff", "obj": object()})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    log.debug("hidden at info")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # one line per event, the debug one filtered out
    first, second = (json.loads(line) for line in lines)
    assert first["msg"] == "multi\nline" and first["level"] == "INFO" and first["role"] == "storage"
    assert first["worker"] == 1 and first["partition"] == 3 and "pid" in first and first["ts"].endswith("Z")
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["exc"]


def test_logfmt_is_one_line_per_event_too(restore_root: None) -> None:
    out = io.StringIO()
    setup_logging(LogConfig(level="warn", format="logfmt"), "router", stream=out)
    log = logging.getLogger("zlog.test")
    log.info("not shown")
    log.warning('quote " and\nnewline', extra={"k": "v w"})
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert "level=WARN" in lines[0] and 'k="v w"' in lines[0]


def test_setup_is_idempotent(restore_root: None) -> None:
    out = io.StringIO()
    for _ in range(3):
        setup_logging(LogConfig(), "gateway", stream=out)
    logging.getLogger("zlog.test").info("once")
    assert len(out.getvalue().splitlines()) == 1
