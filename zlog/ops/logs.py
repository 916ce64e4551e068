"""Structured process logs: one event per line on stderr, JSON objects or logfmt.

Every zlog process calls ``setup_logging`` once at start; modules then log through
``logging.getLogger("zlog.<noun>")`` and pass structured fields with ``extra={...}``.

Invariants:
- One event is exactly one line: JSON escapes newlines, logfmt quotes and escapes them, and a
  traceback travels inside the ``exc`` field.
- Every line carries ``ts`` (RFC 3339, UTC, milliseconds), ``level``, ``role``, ``logger`` and
  ``msg``, then ``pid`` and the static fields given to ``setup_logging`` (worker id, ...), then the
  event's own ``extra`` fields. A field never breaks a line: values that JSON cannot encode are
  written as their ``str()``.
- ``setup_logging`` is idempotent: it replaces the root logger's handlers instead of adding more.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, TextIO

import orjson

from zlog.config import LogConfig

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR}
_LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "FATAL"}


def rfc3339_ms(epoch_s: float) -> str:
    """``2026-01-02T03:04:05.678Z`` for a unix time in seconds."""
    ms = int(epoch_s * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _fields(record: logging.LogRecord, role: str, static: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": rfc3339_ms(record.created),
        "level": _LEVEL_NAMES.get(record.levelname, record.levelname),
        "role": role,
        "logger": record.name,
        "msg": record.getMessage(),
    }
    out.update(static)
    for key, value in record.__dict__.items():
        if key not in _RESERVED and not key.startswith("_"):
            out[key] = value
    if record.exc_info and record.exc_info[0] is not None:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    elif record.exc_text:
        out["exc"] = record.exc_text
    if record.stack_info:
        out["stack"] = record.stack_info
    return out


class _StructuredFormatter(logging.Formatter):
    """One line per event from ``_fields``; subclasses say how the fields are written."""

    def __init__(self, role: str, static: dict[str, Any]) -> None:
        super().__init__()
        self.role = role
        self.static = dict(static)

    def format(self, record: logging.LogRecord) -> str:
        return self.render(_fields(record, self.role, self.static))

    def render(self, fields: dict[str, Any]) -> str:
        raise NotImplementedError


class JsonFormatter(_StructuredFormatter):
    def render(self, fields: dict[str, Any]) -> str:
        try:
            return orjson.dumps(fields, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except (orjson.JSONEncodeError, TypeError):  # e.g. an int beyond 64 bits, a lone surrogate
            return json.dumps(fields, default=str, ensure_ascii=True)


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and not any(c in text for c in ' "=\\\n\r\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + escaped.replace("\t", "\\t") + '"'


class LogfmtFormatter(_StructuredFormatter):
    def render(self, fields: dict[str, Any]) -> str:
        return " ".join(f"{_logfmt_key(k)}={_logfmt_value(v)}" for k, v in fields.items())


def _logfmt_key(key: Any) -> str:
    text = str(key)
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in text) or "_"


def setup_logging(
    cfg: LogConfig, role: str, *, stream: TextIO | None = None, **static_fields: Any
) -> None:
    """Send every log event of this process to stderr (or ``stream``), one line each."""
    fmt_class = LogfmtFormatter if cfg.format == "logfmt" else JsonFormatter
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(fmt_class(role, {"pid": os.getpid(), **static_fields}))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(cfg.level.lower(), logging.INFO))
    logging.captureWarnings(True)
    # Library chatter (asyncio debug, aiohttp access lines) stays at WARNING unless asked for.
    for noisy in ("asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
