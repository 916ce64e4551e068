"""A leader answers a fetch below its log start with OFFSET_OUT_OF_RANGE, the start and its producers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.replication.test_logfiles import fill
from zlog.config import StorageConfig
from zlog.replication import messages as rm
from zlog.replication.epochs import EpochCache
from zlog.replication.isr import LeaderState
from zlog.replication.leader import Led
from zlog.replication.logfiles import first_producers
from zlog.storage import PartitionLog


def test_a_fetch_below_the_log_start_is_out_of_range_and_one_at_it_gets_batches(tmp_path: Path) -> None:
    plog = PartitionLog.open(tmp_path / "p", StorageConfig(segment_bytes=4096, retention_bytes=6000))
    fill(plog, 60)
    assert plog.enforce_retention()
    start = plog.lowest_offset
    led = Led(0, "0", 2, LeaderState(0, (0, 1), frozenset({0}), 0, plog.next_offset, 1000, 0.0),
              EpochCache([(2, 0)]))
    for offset in (0, start - 1):
        req = rm.parse_request(rm.request(rm.Request("fetch", 7, "0", 1, 2, offset, 1 << 20, 0)))
        body, moved = led.answer_fetch(b"id", req, plog, 1.0)
        assert body is not None and not moved
        r = rm.parse_reply(body)
        assert (r.id, r.error, r.log_start) == (7, "OFFSET_OUT_OF_RANGE", start)
        assert r.producers == tuple(first_producers(plog)) and r.producers
    body, _ = led.answer_fetch(b"id", rm.Request("fetch", 8, "0", 1, 2, start, 1 << 20, 0), plog, 2.0)
    assert body is not None
    r = rm.parse_reply(body)
    assert r.error is None and r.batches and r.batches[0][0].base == start
    plog.close()


@pytest.mark.parametrize("producers", [None, "x", [[b"p", 1, 2]], [["p", 1, 2, 3]], [[b"p", -1, 2, 3]]])
def test_a_malformed_out_of_range_reply_is_a_bad_message(producers: object) -> None:
    raw = rm.pack({"t": "fetch", "id": 1, "p": "0", "error": "OFFSET_OUT_OF_RANGE", "leader_epoch": 1,
                   "log_start": 5, "producers": producers})
    with pytest.raises(rm.BadMessage):
        rm.parse_reply(raw)
