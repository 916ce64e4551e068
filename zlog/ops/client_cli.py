"""``zlog produce``: stdin into the cluster through ``zlog.client.Producer``, like Kafka's console producer.

Each non-empty stdin line is one record. A line that is a JSON object is taken as a record
(``service``/``level`` default to the flags, ``--label`` pairs are added to its labels); any
other line is the ``message`` of a record of ``--service`` at ``--level``.

Invariants:
- Lines are batched by what stdin has ready (up to ``BATCH_RECORDS`` per send), so a pipe of a
  million lines goes out in large messages while an interactive line goes out at once.
- Each record is validated on its own first: a bad line is reported with its line number and
  skipped, and never fails the good lines batched with it.
- At EOF everything sent is flushed; the exit code is 0 only if every record was acknowledged
  (1 otherwise, 2 for a usage error such as a text line without ``--service``); failures are
  printed on stderr, with a final count.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, BinaryIO, TextIO

import orjson

from zlog.client import Producer
from zlog.config import Config
from zlog.ingest.records import InvalidBatch, Limits, encode_one
from zlog.protocol.errors import ZlogError
from zlog.replication.etcd_server import discovery_endpoints
from zlog.security.curve import client_curve
from zlog.tenants.ids import is_valid

BATCH_RECORDS = 1000
MAX_OUTSTANDING = 64  # sends in flight before reading more stdin
MAX_REPORTED = 20


def read_batches(stream: BinaryIO, batch: int = BATCH_RECORDS) -> Iterator[list[tuple[int, bytes]]]:
    """(line number, line) lists: whatever complete lines one read returned, at most ``batch`` each."""
    fd = stream.fileno()
    rest = b""
    lineno = 0
    while True:
        chunk = os.read(fd, 1 << 16)
        data = rest + chunk if chunk else rest + (b"\n" if rest else b"")
        cut = data.rfind(b"\n") + 1
        lines, rest = data[:cut].split(b"\n")[:-1], data[cut:]
        out: list[tuple[int, bytes]] = []
        for line in lines:
            lineno += 1
            if line.strip():
                out.append((lineno, line.rstrip(b"\r")))
                if len(out) >= batch:
                    yield out
                    out = []
        if out:
            yield out
        if not chunk:
            return


def to_record(line: bytes, args: argparse.Namespace) -> dict[str, Any]:
    """The record a stdin line stands for (validation happens later, in ``encode_one``)."""
    labels = dict(args.label)
    if line.lstrip().startswith(b"{"):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            if "service" not in value and args.service:
                value["service"] = args.service
            value.setdefault("level", args.level)
            if labels:
                own = value.get("labels")
                value["labels"] = {**labels, **own} if isinstance(own, dict) else labels
            return value
    rec: dict[str, Any] = {"service": args.service, "level": args.level,
                           "message": line.decode("utf-8", "replace")}
    if labels:
        rec["labels"] = labels
    return rec


class Report:
    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self.reported = 0

    def fail(self, what: str, count: int = 1) -> None:
        self.failed += count
        if self.reported < MAX_REPORTED:
            self.reported += 1
            print(f"zlog produce: {what}", file=self.err)


def produce(cfg: Config, args: argparse.Namespace, stdin: BinaryIO | None = None, stderr: TextIO | None = None) -> int:
    stdin = stdin or sys.stdin.buffer
    err = stderr or sys.stderr
    routers = [args.router] if getattr(args, "router", None) else list(cfg.router.front)
    limits = Limits.from_config(cfg.gateway, cfg.storage)
    report = Report(err)
    tenant = getattr(args, "tenant", None) or None
    if tenant is not None and not is_valid(tenant):
        print("zlog produce: --tenant is not a tenant id (1..150 of 0-9 a-z A-Z ! - _ . * ' ( ))", file=err)
        return 2
    try:
        curve = client_curve(cfg, getattr(args, "key", None) or "gateway")
    except ValueError as exc:
        print(f"zlog produce: {exc}", file=err)
        return 2
    try:
        etcd = () if getattr(args, "router", None) else discovery_endpoints(cfg)  # --router: that one only
        producer = Producer(routers, node_id=cfg.cluster.node_id, limits=limits, linger_ms=1.0,
                            delivery_timeout_s=cfg.gateway.request_timeout_ms / 1000.0, curve=curve,
                            etcd=etcd, etcd_prefix=cfg.cluster.etcd_prefix)
    except ZlogError as exc:
        print(f"zlog produce: cannot reach a router at {', '.join(routers)}: {exc.message}", file=err)
        return 1
    outstanding: deque[tuple[concurrent.futures.Future[list[tuple[int, int]]], int, int]] = deque()

    def settle(fut: concurrent.futures.Future[list[tuple[int, int]]], first: int, n: int,
               timeout: float | None = None) -> None:
        try:
            fut.result(timeout)
            report.acked += n
        except ZlogError as exc:
            report.fail(f"lines {first}..: {n} records not stored: {exc.code}: {exc.message}", n)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            report.fail(f"lines {first}..: {n} records not acknowledged before exit", n)

    t0 = time.monotonic()
    missing_service = False
    try:
        for lines in read_batches(stdin):
            records = []
            for lineno, line in lines:
                rec = to_record(line, args)
                if not rec.get("service") and not args.service:
                    missing_service = True
                try:
                    encode_one(rec, limits, received_at=0, client_ip="", node_id="")
                except InvalidBatch as exc:
                    detail = "; ".join(f"{e.field or 'record'}: {e.problem}" for e in exc.errors) or exc.message
                    report.fail(f"line {lineno}: invalid record ({detail})")
                    continue
                records.append(rec)
            if not records:
                continue
            outstanding.append((producer.send(records, tenant=tenant), lines[0][0], len(records)))
            report.sent += len(records)
            while len(outstanding) > MAX_OUTSTANDING:
                settle(*outstanding.popleft())
        while outstanding:
            settle(*outstanding.popleft())
    except KeyboardInterrupt:
        print("zlog produce: interrupted; flushing what was sent", file=err)
    finally:
        producer.close()
        while outstanding:  # only after an interrupt: whatever close() did not settle failed
            settle(*outstanding.popleft(), timeout=0)
    elapsed = time.monotonic() - t0
    print(f"zlog produce: {report.acked} records stored, {report.failed} failed ({elapsed:.2f} s)", file=err)
    if missing_service and report.failed:
        print("zlog produce: text lines need --service (or JSON objects with a service)", file=err)
        return 2 if report.acked == 0 else 1
    return 0 if report.failed == 0 else 1
