"""Syslog messages (RFC 5424 and RFC 3164) to zlog records, and TCP framing (octet counting, LF).

Mapping: ``service`` = APP-NAME (5424) or TAG (3164), ``syslog`` when absent; ``level`` =
the severity (0-2 FATAL, 3 ERROR, 4 WARN, 5-6 INFO, 7 DEBUG); ``message`` = MSG; ``labels`` =
``host`` (HOSTNAME), ``facility`` (its name) and ``source="syslog"``; ``metadata`` = PROCID,
MSGID and every structured-data parameter as ``<SD-ID>.<name>``. RFC 5424 timestamps carry their
offset; RFC 3164 ones have no zone and no year, so they are read in the receiver's local zone
(``local_to_utc``) in the year that puts them nearest before now.

Invariants:
- Pure: bytes in, records out; the clock and the local zone are arguments.
- ``parse`` raises ``SyslogError`` (counted as dropped by the listener) for a message it cannot
  read: no ``<PRI>``, a PRI over 191, invalid UTF-8, a malformed 5424 header or structured data.
  Nothing is ever stored cut or half-decoded.
- ``Framer`` holds at most ``max_bytes`` of a message: a longer one (octet count or line) is
  skipped to its end and counted as dropped, never buffered whole.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from zlog.ingest import levels
from zlog.ingest.timestamps import parse_rfc3339

FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
              "ftp", "ntp", "security", "console", "solaris-cron", "local0", "local1", "local2", "local3",
              "local4", "local5", "local6", "local7")
SOURCE = "syslog"
DEFAULT_SERVICE = "syslog"
_MONTHS = {m: i + 1 for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                           "Nov", "Dec"))}
_PRI = re.compile(rb"<(\d{1,3})>")
_3164_TS = re.compile(r"([A-Z][a-z]{2}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) ")
_TAG = re.compile(r"([^\s:\[]{1,48})(?:\[([^\]]{1,32})\])?:? ?")
_SD_PARAM = re.compile(r' ([^= \]"]{1,32})="((?:[^"\\]|\\.)*)"')
_SD_ID = re.compile(r"\[([^= \]\"]{1,32})")


class SyslogError(ValueError):
    """A message that cannot be read; ``reason`` is the metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _local_to_utc(fields: tuple[int, int, int, int, int, int]) -> int:
    return int(time.mktime((*fields, 0, 0, -1)))


def parse(data: bytes, *, now_ms: int,
          local_to_utc: Callable[[tuple[int, int, int, int, int, int]], int] = _local_to_utc) -> dict[str, Any]:
    m = _PRI.match(data)
    if m is None:
        raise SyslogError("no_pri", "the message does not start with <PRI>")
    pri = int(m.group(1))
    if pri > 191:
        raise SyslogError("bad_pri", f"PRI {pri} is over 191")
    try:
        text = data[m.end():].decode("utf-8")
    except UnicodeDecodeError:
        raise SyslogError("invalid_utf8", "the message is not valid UTF-8") from None
    facility, severity = FACILITIES[pri >> 3], pri & 7
    if text.startswith("1 "):
        rec = _rfc5424(text[2:], now_ms)
    else:
        rec = _rfc3164(text, now_ms, local_to_utc)
    rec["level"] = levels.from_syslog(severity)
    rec["labels"]["facility"] = facility
    rec["labels"]["source"] = SOURCE
    if not rec["message"]:
        raise SyslogError("empty", "the message has no text")
    return rec


def _field(text: str, pos: int) -> tuple[str, int]:
    end = text.find(" ", pos)
    if end < 0:
        return text[pos:], len(text)
    return text[pos:end], end + 1


def _rfc5424(text: str, now_ms: int) -> dict[str, Any]:
    pos = 0
    ts_text, pos = _field(text, pos)
    host, pos = _field(text, pos)
    app, pos = _field(text, pos)
    procid, pos = _field(text, pos)
    msgid, pos = _field(text, pos)
    if pos >= len(text) and not msgid:
        raise SyslogError("bad_header", "RFC 5424 header is incomplete")
    if ts_text == "-":
        ts = now_ms
    else:
        try:
            ts = parse_rfc3339(ts_text) // 1_000_000
        except ValueError as exc:
            raise SyslogError("bad_timestamp", str(exc)) from None
    meta: dict[str, str] = {}
    if procid != "-":
        meta["procid"] = procid
    if msgid != "-":
        meta["msgid"] = msgid
    if text[pos:pos + 1] == "-":
        pos += 2
    elif text[pos:pos + 1] == "[":
        pos = _structured_data(text, pos, meta)
    else:
        raise SyslogError("bad_structured_data", "expected '-' or '[' where structured data starts")
    msg = text[pos:]
    if msg.startswith("\ufeff"):
        msg = msg[1:]
    labels = {} if host == "-" else {"host": host}
    return {"timestamp": ts, "service": app if app != "-" else DEFAULT_SERVICE, "message": msg.rstrip("\r\n"),
            "labels": labels, "metadata": meta}


def _structured_data(text: str, pos: int, meta: dict[str, str]) -> int:
    while text[pos:pos + 1] == "[":
        m = _SD_ID.match(text, pos)
        if m is None:
            raise SyslogError("bad_structured_data", f"bad SD-ID at column {pos}")
        sd_id, pos = m.group(1), m.end()
        while True:
            p = _SD_PARAM.match(text, pos)
            if p is None:
                break
            value = re.sub(r"\\([\"\\\]])", r"\1", p.group(2))
            meta[f"{sd_id}.{p.group(1)}"] = value
            pos = p.end()
        if text[pos:pos + 1] != "]":
            raise SyslogError("bad_structured_data", f"unterminated structured data element at column {pos}")
        pos += 1
    if text[pos:pos + 1] == " ":
        pos += 1
    return pos


def _rfc3164(text: str, now_ms: int, local_to_utc: Callable[[tuple[int, int, int, int, int, int]], int],
             ) -> dict[str, Any]:
    m = _3164_TS.match(text)
    labels: dict[str, str] = {}
    meta: dict[str, str] = {}
    ts = now_ms
    pos = 0
    if m is not None and m.group(1) in _MONTHS:
        month, day = _MONTHS[m.group(1)], int(m.group(2))
        hh, mm, ss = int(m.group(3)), int(m.group(4)), int(m.group(5))
        year = time.gmtime(now_ms / 1000).tm_year
        ts = local_to_utc((year, month, day, hh, mm, ss)) * 1000
        if ts > now_ms + 86_400_000:  # a December message read in January
            ts = local_to_utc((year - 1, month, day, hh, mm, ss)) * 1000
        pos = m.end()
        host, after = _field(text, pos)
        if host:
            labels["host"] = host
            pos = after
    service = DEFAULT_SERVICE
    t = _TAG.match(text, pos)
    if t is not None and (text[t.end() - 2:t.end()] == ": " or text[t.end() - 1:t.end()] == ":"):
        service = t.group(1)
        if t.group(2):
            meta["procid"] = t.group(2)
        pos = t.end()
    return {"timestamp": ts, "service": service, "message": text[pos:].rstrip("\r\n"), "labels": labels,
            "metadata": meta}


class Framer:
    """TCP syslog framing: octet counting (``<len> <msg>``) or LF-terminated, detected per message."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.skip = 0  # bytes of an oversized octet-counted message still to discard
        self.skip_line = False  # discarding an oversized LF-framed line up to its newline
        self.dropped = 0

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out: list[bytes] = []
        buf = self.buf
        while buf:
            if self.skip:
                n = min(self.skip, len(buf))
                del buf[:n]
                self.skip -= n
                continue
            if self.skip_line:
                nl = buf.find(b"\n")
                if nl < 0:
                    buf.clear()
                    break
                del buf[:nl + 1]
                self.skip_line = False
                continue
            if buf[:1].isdigit():
                sp = buf.find(b" ", 0, 12)
                if sp < 0:
                    if len(buf) >= 12 or not buf.isdigit():
                        self._drop_line()
                        continue
                    break  # the length is still arriving
                if not buf[:sp].isdigit():
                    self._drop_line()
                    continue
                n = int(buf[:sp])
                if n > self.max_bytes:
                    self.dropped += 1
                    del buf[:sp + 1]
                    self.skip = n
                    continue
                if len(buf) < sp + 1 + n:
                    break
                out.append(bytes(buf[sp + 1:sp + 1 + n]))
                del buf[:sp + 1 + n]
                continue
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > self.max_bytes:
                    self._drop_line()
                break
            line = bytes(buf[:nl]).rstrip(b"\r")
            del buf[:nl + 1]
            if len(line) > self.max_bytes:
                self.dropped += 1
            elif line.strip():
                out.append(line)
        return out

    def _drop_line(self) -> None:
        self.dropped += 1
        nl = self.buf.find(b"\n")
        if nl < 0:
            self.buf.clear()
            self.skip_line = True
        else:
            del self.buf[:nl + 1]

    def close(self) -> bytes | None:
        """What is left when the connection ends: a last line without its newline."""
        rest = bytes(self.buf).rstrip(b"\r\n")
        self.buf.clear()
        if rest and not self.skip and not self.skip_line and len(rest) <= self.max_bytes:
            return rest
        return None
