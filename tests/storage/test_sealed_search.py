"""Property: a search through sealed segments' index (blocks skipped by token filter and time
range) returns exactly what a plain scan with the same predicate returns, in the same order."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storage_helpers import FakeClock, tiny

from zlog.read.query import Filter, compile_filter, needles_of
from zlog.storage import PartitionLog
from zlog.storage.tokens import needles, words

VOCAB = ["alpha", "beta", "Gamma", "délta", "ÄBC", "x1", "foo_bar", "zz9", "ÉTÉ", "ok"]
SEPS = [" ", "-", ".", "/", ": ", "_"]

record = st.fixed_dictionaries({
    "service": st.sampled_from(["api", "db-main", "web_front"]),
    "level": st.sampled_from(["INFO", "warn", "ERROR"]),
    "message": st.lists(st.sampled_from(VOCAB), min_size=1, max_size=4).flatmap(
        lambda ws: st.lists(st.sampled_from(SEPS), min_size=len(ws), max_size=len(ws)).map(
            lambda ss: "".join(w + s for w, s in zip(ws, ss, strict=True)).strip())),
    "labels": st.dictionaries(st.sampled_from(["env", "zone"]), st.sampled_from(["prod", "eu-1", "Alpha x"]),
                              max_size=2),
    "dt": st.integers(0, 40),
})


def _lines(recs: list[dict[str, Any]]) -> list[bytes]:
    ts, out = 1_000_000, []
    for r in recs:
        ts += r["dt"]
        out.append(orjson.dumps({"timestamp": ts, "service": r["service"], "level": r["level"],
                                 "message": r["message"], "labels": r["labels"]}))
    return out


def _paged(log: PartitionLog, backward: bool, **kw: Any) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    start = None
    while True:
        r = log.scan(backward=backward, start=start, limit=7, budget_bytes=600, **kw)
        out += r.records
        if r.next is None:
            return out
        start = r.next


@st.composite
def filters(draw: st.DrawFn, msgs: list[str]) -> Filter:
    msg = draw(st.sampled_from(msgs))
    i = draw(st.integers(0, len(msg)))
    contains = draw(st.one_of(st.none(), st.just(msg[i:i + draw(st.integers(1, 12))]), st.sampled_from(VOCAB)))
    q = draw(st.lists(st.sampled_from([*VOCAB, "alpha beta", "GAMMA", "missing"]), max_size=2))
    f = Filter(
        services=tuple(draw(st.lists(st.sampled_from(["api", "db-main", "nope"]), max_size=2, unique=True))),
        levels=tuple(draw(st.lists(st.sampled_from(["info", "ERROR"]), max_size=1))),
        contains=contains or None,
        labels=tuple(draw(st.dictionaries(st.sampled_from(["env"]), st.sampled_from(["prod", "Alpha x"]),
                                          max_size=1)).items()),
        since_ms=draw(st.one_of(st.none(), st.integers(1_000_000, 1_004_000))),
        until_ms=draw(st.one_of(st.none(), st.integers(1_004_000, 1_008_000))),
        words=tuple(dict.fromkeys(w for text in q for w in words(text))),
    )
    return f


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=st.lists(record, min_size=60, max_size=200), data=st.data())
def test_indexed_search_equals_plain_scan(recs: list[dict[str, Any]], data: st.DataObject) -> None:
    root = Path(tempfile.mkdtemp(prefix="zlog-prop-"))
    try:
        lines = _lines(recs)
        logs = []
        for name in ("plain", "sealed"):
            log = PartitionLog.open(root / name, tiny(segment_bytes=1200), clock=FakeClock())
            for k in range(0, len(lines), 5):
                log.append(lines[k:k + 5], orjson.loads(lines[min(k + 4, len(lines) - 1)])["timestamp"])
                log.commit()
            logs.append(log)
        plain, sealed = logs
        sealed.seal_closed(block_bytes=200, level=1)
        msgs = [r["message"] for r in recs]
        for _ in range(4):
            f = data.draw(filters(msgs))
            pred = compile_filter(f)
            for backward in (True, False):
                want = _paged(plain, backward, predicate=pred)
                got = _paged(sealed, backward, predicate=pred, since_ms=f.since_ms, until_ms=f.until_ms,
                             needles=needles_of(f))
                assert got == want, f
                # plain segments probe chunks for the needles instead: the same answer
                assert _paged(plain, backward, predicate=pred, needles=needles_of(f)) == want, f
        # the needle API alone (what LogQL line filters call) never drops a match either
        needle = data.draw(st.sampled_from(VOCAB))
        want = _paged(plain, True, predicate=lambda line: needle.encode() in line)
        assert _paged(sealed, True, predicate=lambda line: needle.encode() in line,
                      needles=needles((), [needle])) == want
        # and the index does skip: a word no record has leaves no block to read
        assert _paged(sealed, True, predicate=compile_filter(Filter(words=("missing",))),
                      needles=needles(["missing"])) == []
        assert sealed.stats["segments_sealed"] >= 2 and sealed.stats["blocks_skipped"] > 0
        for log in logs:
            log.close()
    finally:
        shutil.rmtree(root)
