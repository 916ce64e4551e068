"""``zlog query`` and ``zlog tail``: the gateway's read API on a terminal.

Invariants:
- Talks HTTP to a gateway only (stdlib ``urllib``): the same filters, limits and errors as
  ``/v1/logs`` and ``/v1/tail``; nothing here reads storage files.
- Output is one line per record: text (level colored when stdout is a terminal and ``NO_COLOR``
  is unset) or, with ``--json``, the stored JSON object plus ``partition`` and ``offset``.
- Records are printed oldest first, so the newest line is the last one, as with ``tail``.
- ``zlog tail`` prints the newest ``--limit`` (default 10) records, then follows from exactly
  where that query ended (its ``tail_cursor``), and after a dropped connection resumes from the
  last event id: no record is lost or printed twice.
- Exit codes: 0 ok, 1 the gateway failed or is unreachable, 2 bad parameters (the gateway's
  message naming the parameter is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from zlog.config import Config

MAX_PAGE = 5000
COLORS = {"debug": "\x1b[90m", "trace": "\x1b[90m", "info": "\x1b[32m", "notice": "\x1b[32m",
          "warn": "\x1b[33m", "warning": "\x1b[33m", "error": "\x1b[31m", "err": "\x1b[31m",
          "fatal": "\x1b[1;31m", "critical": "\x1b[1;31m", "panic": "\x1b[1;31m"}
DIM, RESET = "\x1b[2m", "\x1b[0m"


class ReadError(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def filter_params(args: argparse.Namespace) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = [("service", s) for s in args.service or ()]
    params += [("level", lv) for lv in args.level or ()]
    if args.contains:
        params.append(("contains", args.contains))
    if args.regex:
        params.append(("regex", args.regex))
    for label in args.label or ():
        k, v = label if isinstance(label, tuple) else str(label).split("=", 1)
        params.append((f"label.{k}", v))
    if args.since:
        params.append(("since", args.since))
    if args.until:
        params.append(("until", args.until))
    return params


def auth_headers() -> dict[str, str]:
    """Credentials for a gateway with auth on: ``ZLOG_TOKEN`` (bearer), ``ZLOG_TENANT`` (X-Scope-OrgID).

    From the environment, never a flag: other users of the host can read a command line."""
    headers = {}
    token = os.environ.get("ZLOG_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    tenant = os.environ.get("ZLOG_TENANT")
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    return headers


def request_headers(args: argparse.Namespace) -> dict[str, str]:
    """The tenant a command reads when ``--tenant`` names one (over ``ZLOG_TENANT``)."""
    tenant = getattr(args, "tenant", None)
    return {"X-Scope-OrgID": tenant} if tenant else {}


def _get(url: str, timeout: float = 30.0, headers: dict[str, str] | None = None) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={**auth_headers(), **(headers or {})}),
                                    timeout=timeout) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body
    except urllib.error.HTTPError as err:
        raise _http_error(err) from None
    except (urllib.error.URLError, OSError) as err:
        raise ReadError(f"cannot reach the gateway at {url.split('/v1/')[0]}: {err}") from None


def _http_error(err: urllib.error.HTTPError) -> ReadError:
    try:
        body = json.loads(err.read())
        text = f"{body.get('error', err.code)}: {body.get('message', '')}"
    except ValueError:
        text = f"HTTP {err.code}"
    return ReadError(text, 2 if err.code == 400 else 1)


def fetch_page(base: str, params: list[tuple[str, str]], limit: int, backward: bool,
               cursor: str | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    p = [*params, ("limit", str(limit)), ("direction", "backward" if backward else "forward")]
    if cursor:
        p.append(("cursor", cursor))
    return _get(f"{base}/v1/logs?{urllib.parse.urlencode(p)}", headers=headers)


def search(base: str, params: list[tuple[str, str]], limit: int, backward: bool,
           headers: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``limit`` records in the gateway's order, paging as needed; and the tail cursor."""
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    tail_cursor: str | None = None
    while len(out) < limit:
        page = fetch_page(base, params, min(MAX_PAGE, limit - len(out)), backward, cursor, headers)
        tail_cursor = tail_cursor or page.get("tail_cursor")
        out += page["records"]
        cursor = page.get("cursor")
        if not page.get("more") or not cursor:
            break
    return out, tail_cursor


def format_record(rec: dict[str, Any], color: bool) -> str:
    ts = rec.get("timestamp")
    when = (datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            if isinstance(ts, int) else "?")
    level = str(rec.get("level") or "-")
    labels = " ".join(f"{k}={v}" for k, v in (rec.get("labels") or {}).items())
    where = f"[{rec.get('partition')}:{rec.get('offset')}]"
    msg = str(rec.get("message", ""))
    if not color:
        return f"{when} {level:<5} {rec.get('service', '')}: {msg}" + (f"  {labels}" if labels else "") + f"  {where}"
    lc = COLORS.get(level.lower(), "")
    return (f"{DIM}{when}{RESET} {lc}{level:<5}{RESET} \x1b[1m{rec.get('service', '')}{RESET}: {msg}"
            + (f"  {DIM}{labels}{RESET}" if labels else "") + f"  {DIM}{where}{RESET}")


def _printer(args: argparse.Namespace, out: TextIO) -> Any:
    color = not args.json and out.isatty() and not os.environ.get("NO_COLOR")

    def emit(rec: dict[str, Any]) -> None:
        out.write((json.dumps(rec, ensure_ascii=False) if args.json else format_record(rec, color)) + "\n")

    return emit


def query(cfg: Config, args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    backward = (args.direction or "backward") == "backward"
    limit = args.limit if args.limit is not None else 100
    if limit < 1:
        print("zlog query: --limit must be >= 1", file=sys.stderr)
        return 2
    emit = _printer(args, out)
    try:
        records, _ = search(args.url.rstrip("/"), filter_params(args), limit, backward, request_headers(args))
    except ReadError as err:
        print(f"zlog query: {err}", file=sys.stderr)
        return err.exit_code
    for rec in reversed(records) if backward else records:
        emit(rec)
    out.flush()
    return 0


def sse_events(url: str, last_id: str | None, timeout: float = 60.0,
               extra: dict[str, str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, record) per event of one ``/v1/tail`` connection, until it ends."""
    headers = {"Accept": "text/event-stream", **auth_headers(), **(extra or {})}
    if last_id:
        headers["Last-Event-ID"] = last_id
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        raise _http_error(err) from None
    with resp:
        eid, data, event = "", "", ""
        for raw in resp:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("id:"):
                eid = line[3:].strip()
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif not line and data:
                body = json.loads(data)
                if event == "error":
                    raise ReadError(f"{body.get('error')}: {body.get('message', '')}")
                yield eid, body
                data, event = "", ""


def tail(cfg: Config, args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    base = args.url.rstrip("/")
    params = filter_params(args)
    emit = _printer(args, out)
    limit = args.limit if args.limit is not None else 10
    last_id: str | None = None
    try:
        if limit > 0:
            records, last_id = search(base, params, limit, True, request_headers(args))
            for rec in reversed(records):
                emit(rec)
            out.flush()
        backoff = 0.2
        while True:
            url = f"{base}/v1/tail?{urllib.parse.urlencode(params)}"
            try:
                for eid, rec in sse_events(url, last_id, extra=request_headers(args)):
                    last_id = eid or last_id
                    emit(rec)
                    out.flush()
                    backoff = 0.2
            except ReadError as err:
                if err.exit_code == 2:
                    raise
                print(f"zlog tail: {err}; reconnecting", file=sys.stderr)
            except (urllib.error.URLError, OSError) as err:
                print(f"zlog tail: connection lost ({err}); reconnecting", file=sys.stderr)
            time.sleep(backoff)  # a reconnect pause, not a wait for a condition
            backoff = min(backoff * 2, 5.0)
    except ReadError as err:
        print(f"zlog tail: {err}", file=sys.stderr)
        return err.exit_code
