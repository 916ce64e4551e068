"""The worker's read answers on a real PartitionLog with tiny segments (no sockets)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest

from zlog.config import FsyncPolicy, StorageConfig
from zlog.ingest.records import Limits, encode_batch
from zlog.protocol import wire
from zlog.protocol.wire import Command
from zlog.read.query import Filter, compile_filter
from zlog.storage import PartitionLog
from zlog.worker.reads import MAX_REPLY_BYTES, ServiceIndex, answer

CFG = StorageConfig(segment_bytes=4096, index_interval_bytes=256, fsync=FsyncPolicy("never"),
                    scan_budget_bytes=64 * 1024)
SERVICES = ["auth_service", "billing", "search"]
LEVELS = ["INFO", "WARN", "ERROR"]
N = 600


def make(i: int) -> dict[str, Any]:
    # Timestamps are deliberately not monotonic in offset order.
    return {"timestamp": 10_000 + i * 10 - (i % 7) * 13, "service": SERVICES[i % 3], "level": LEVELS[i % 5 % 3],
            "message": f"event {i} {'token expired' if i % 11 == 0 else 'ok'}", "labels": {"n": str(i % 4)}}


def lines_of(recs: list[dict[str, Any]]) -> list[bytes]:
    out = []
    for r in recs:
        g = encode_batch([r], Limits(), received_at=1, client_ip="", node_id="t")
        out.append(next(iter(g.values())).lines[0])
    return out


@pytest.fixture
def plog(tmp_path: Path) -> Iterator[tuple[PartitionLog, list[bytes]]]:
    log = PartitionLog.open(tmp_path / "0", CFG)
    lines = lines_of([make(i) for i in range(N)])
    for i in range(0, N, 25):
        chunk = lines[i:i + 25]
        log.append(chunk, max(orjson.loads(x)["timestamp"] for x in chunk))
        log.commit()
    assert log.segment_count > 5
    yield log, lines
    log.close()


def ask(log: PartitionLog, cmd: Command, body: dict[str, Any], cfg: StorageConfig = CFG) -> dict[str, Any]:
    msg = wire.decode(wire.encode(cmd, 1, partition=0, body=body))
    out = answer(msg, 0, log, cfg)
    # What the worker sends must survive msgpack as it is.
    back: dict[str, Any] = msgpack.unpackb(msgpack.packb(out, use_bin_type=True), raw=False)
    return back


def test_fetch_across_segment_boundaries(plog: tuple[PartitionLog, list[bytes]]) -> None:
    log, lines = plog
    got: list[tuple[int, bytes]] = []
    offset = 0
    while True:
        r = ask(log, Command.FETCH, {"offset": offset, "max_records": 37, "max_bytes": 3000})
        assert r["high_watermark"] == N and r["lowest_offset"] == 0 and r["partition"] == 0
        if not r["records"]:
            break
        assert len(r["records"]) <= 37
        got += [(o, line) for o, line in r["records"]]
        offset = r["next_offset"]
    assert got == list(enumerate(lines))


def test_fetch_bounds_and_past_end(plog: tuple[PartitionLog, list[bytes]]) -> None:
    log, _ = plog
    r = ask(log, Command.FETCH, {"offset": 5, "max_bytes": 1})
    assert [o for o, _ in r["records"]] == [5]  # one record always fits
    r = ask(log, Command.FETCH, {"offset": N + 10})
    assert r["records"] == [] and r["next_offset"] == N + 10
    for bad in ({}, {"offset": -1}, {"offset": 0, "max_records": 0}, {"offset": "x"},
                {"offset": 0, "max_bytes": MAX_REPLY_BYTES + 1}):
        with pytest.raises(wire.MalformedFrame) as err:
            ask(log, Command.FETCH, bad)
        assert err.value.code == "BAD_BODY"


def _search_all(log: PartitionLog, flt: Filter, backward: bool, limit: int) -> list[int]:
    offsets: list[int] = []
    start: int | None = None
    for _ in range(10_000):
        body: dict[str, Any] = {"filter": flt.to_body(), "backward": backward, "limit": limit, "budget": 2048}
        if start is not None:
            body["start"] = start
        r = ask(log, Command.SEARCH, body)
        assert len(r["records"]) <= limit
        offsets += [o for o, _ in r["records"]]
        if backward and r["next"] is None:
            return offsets
        if not backward and r["next"] == r["high_watermark"]:
            return offsets
        start = r["next"]
    raise AssertionError("search did not finish")


@pytest.mark.parametrize("flt", [
    Filter(),
    Filter(services=("billing",)),
    Filter(levels=("error",), contains="token"),
    Filter(regex=r"event \d*7 ", labels=(("n", "3"),)),
    Filter(since_ms=13_000, until_ms=14_000),
    Filter(contains="no such text anywhere"),
])
@pytest.mark.parametrize("backward", [True, False])
def test_search_pages_have_no_gap_and_no_repeat(plog: tuple[PartitionLog, list[bytes]], flt: Filter,
                                                backward: bool) -> None:
    log, lines = plog
    pred = compile_filter(flt)
    expected = [i for i, line in enumerate(lines) if pred is None or pred(line)]
    if backward:
        expected.reverse()
    assert _search_all(log, flt, backward, limit=7) == expected


def test_search_reply_shape_and_bad_bodies(plog: tuple[PartitionLog, list[bytes]]) -> None:
    log, lines = plog
    r = ask(log, Command.SEARCH, {"filter": {"services": ["search"]}, "limit": 3})
    assert [o for o, _ in r["records"]] == [599 - (599 - 2) % 3 - 3 * k for k in range(3)]
    assert all(line == lines[o] for o, line in r["records"])
    assert r["scanned_records"] >= 7 and r["scanned_bytes"] > 0 and r["next"] is not None
    bad: dict[str, Any]
    for bad in ({"filter": {"regex": "("}}, {"limit": 0}, {"limit": 5001}, {"backward": "yes"},
                {"filter": []}, {"start": -3}):
        with pytest.raises(wire.MalformedFrame) as err:
            ask(log, Command.SEARCH, bad)
        assert err.value.code == "BAD_BODY"


def test_search_budget_is_capped_by_config(plog: tuple[PartitionLog, list[bytes]]) -> None:
    log, _ = plog
    r = ask(log, Command.SEARCH, {"filter": {"contains": "nothing matches"}, "budget": 1 << 30})
    assert r["records"] == []
    assert r["scanned_bytes"] <= CFG.scan_budget_bytes + 1024 * 1024
    assert r["next"] is None or r["scanned_bytes"] >= CFG.scan_budget_bytes


def test_stats_and_services(plog: tuple[PartitionLog, list[bytes]]) -> None:
    log, lines = plog
    r = ask(log, Command.STATS, {})
    assert r == {"partition": 0, "lowest_offset": 0, "next_offset": N, "bytes": log.size_bytes,
                 "segments": log.segment_count, "max_timestamp": log.max_timestamp,
                 "raw_bytes": log.size_bytes, "stored_bytes": log.stored_bytes, "index_bytes": 0,
                 "sealed_segments": 0}
    r = ask(log, Command.STATS, {"services": True})
    newest: dict[str, int] = {}
    for line in lines:
        rec = orjson.loads(line)
        newest[rec["service"]] = max(newest.get(rec["service"], 0), rec["timestamp"])
    assert r["services"] == newest
    more = lines_of([{"timestamp": 99, "service": 'new "svc"', "message": "m"}])
    log.append(more, 99)
    log.commit()
    r = ask(log, Command.STATS, {"services": True})
    assert r["services"]['new "svc"'] == 99


def test_services_grow_within_budget_on_big_partitions(plog: tuple[PartitionLog, list[bytes]]) -> None:
    from zlog.worker.reads import services

    log, _ = plog
    first = services(log, budget=512)  # sees only the newest few records and oldest few
    assert first
    for _ in range(200):
        seen = services(log, budget=512)
    assert set(seen) == set(SERVICES)


@pytest.mark.parametrize("backward", [True, False])
def test_since_skips_older_segments_by_the_time_index(plog: tuple[PartitionLog, list[bytes]], backward: bool) -> None:
    log, lines = plog
    since = orjson.loads(lines[N - 60])["timestamp"]
    scanned = 0
    start: int | None = None
    found: list[int] = []
    while True:
        body: dict[str, Any] = {"filter": {"since": since}, "backward": backward, "limit": 1000}
        if start is not None:
            body["start"] = start
        r = ask(log, Command.SEARCH, body)
        scanned += r["scanned_records"]
        found += [o for o, _ in r["records"]]
        start = r["next"]
        if start is None or start == r["high_watermark"]:
            break
    assert sorted(found) == [i for i, line in enumerate(lines) if orjson.loads(line)["timestamp"] >= since]
    assert scanned < N // 3, f"scanned {scanned} of {N} records for the newest ~60"


def test_searches_answer_the_same_after_sealing(plog: tuple[PartitionLog, list[bytes]]) -> None:
    """SEARCH (filters, q= words, LogQL line filters) pages to the same records once the closed
    segments are sealed and their token filters skip blocks."""
    log, _ = plog
    bodies: list[dict[str, Any]] = [
        {"filter": {"words": ["TOKEN"]}}, {"filter": {"contains": "token expired"}},
        {"filter": {"contains": "event 17"}, "backward": False}, {"filter": {"services": ["billing"], "levels": ["warn"]}},
        {"filter": {}, "logql": '{service="search"} |= "expired"'}, {"filter": {"words": ["nothing"]}},
    ]

    def pages(body: dict[str, Any]) -> list[list[Any]]:
        out: list[list[Any]] = []
        start = None
        while True:
            r = ask(log, Command.SEARCH, {**body, "limit": 13, **({"start": start} if start is not None else {})})
            out += r["records"]
            if r["next"] is None or (not body.get("backward", True) and r["next"] >= r["high_watermark"]):
                return out
            start = r["next"]

    before = [pages(b) for b in bodies]
    assert before[0] and before[0] == before[1] and before[-1] == [] and before[4]
    skipped = log.stats["blocks_skipped"]
    assert log.seal_closed(block_bytes=512, level=3) == log.segment_count - 1
    assert [pages(b) for b in bodies] == before
    assert log.stats["blocks_skipped"] > skipped


def test_the_services_index_reads_the_service_a_decoder_reads() -> None:
    idx = ServiceIndex(0, None)
    head = b'{"timestamp":1700000000000,"service":"seen","level":"INFO","message":"m"'
    for line in (head + b"}", head + b',"service":"real"}', head + b',"labels":{"service":"a-label"}}',
                 b'{"labels":{"service":"a-label"},"timestamp":5,"service":"later","level":"","message":"m"}'):
        assert idx.note(line) is False
    assert set(idx.seen) == {"seen", "real", "later"}
