"""A storage worker's CPU per record without the network: its check, its index, its whole turn.

Each figure is ``process_time`` per record, the best of several rounds (the least disturbed by
other work on a shared machine), on the load generator's records encoded as the gateway stores
them (~210 bytes each):

- ``check``: ``stored.check_batch`` of a batch blob (the form check and the record decode).
- ``index``: ``IndexBuilder.feed`` of the same blob (the sparse offset index).
- ``rollup``: ``Rollup.catch_up`` over a partition of ``--records`` records, 1 MiB per call as a
  worker's idle turns count them.
- ``turn``: a real ``StorageWorker`` (its own data directory, no router) taking two-partition
  PRODUCE messages the way its loop does: stage, commit (with the ``--fsync`` policy), answer.

    python tools/bench_worker.py                 # about half a minute
    python tools/bench_worker.py --batch 100 --fsync always --json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.loadgen import generate
from zlog.config import FsyncPolicy, StorageConfig
from zlog.config.loading import load
from zlog.ingest.records import Limits, encode_batch
from zlog.ingest.stored import check_batch
from zlog.ops.runtime import tune_malloc
from zlog.protocol import bodies, wire
from zlog.protocol.wire import Command
from zlog.storage import PartitionLog
from zlog.storage.index import IndexBuilder
from zlog.storage.rollup import Rollup
from zlog.worker.process import StorageWorker
from zlog.worker.turn import reply_frames

T0 = 1_795_675_988_031


def blob(n: int, seed: int = 5) -> bytes:
    groups = encode_batch(generate(random.Random(seed), T0, n), Limits(), received_at=T0 + 70,
                          client_ip="10.0.0.1", node_id="zlog-1")
    return b"".join(g.data for g in groups.values())


def best_ns(fn: Callable[[], object], records: int, rounds: int = 9, calls: int = 20) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - t0) / calls)
    return best * 1e9 / records


def rollup_ns(records: int) -> float:
    with tempfile.TemporaryDirectory() as d, PartitionLog.open(Path(d), StorageConfig(fsync=FsyncPolicy.parse("never"))) as plog:
        for i in range(0, records, 1000):
            plog.append_data(blob(1000, seed=i), T0)
            plog.commit()
        best = float("inf")
        for _ in range(3):
            r = Rollup(plog.directory)
            t0 = time.process_time()
            while not r.catch_up(plog.segments, 1 << 20):
                pass
            best = min(best, time.process_time() - t0)
        return best * 1e9 / plog.next_offset


def turn_ns(batch: int, fsync: str, messages: int = 25, rounds: int = 12) -> float:
    with tempfile.TemporaryDirectory() as d:
        cfg = load(None, env={"ZLOG_CLUSTER_DATA_DIR": d, "ZLOG_STORAGE_FSYNC": fsync})
        worker = StorageWorker(cfg, 0)
        parts = list(worker.logs)[:2]
        data = blob(batch)
        seq = dict.fromkeys(parts, 0)

        def message() -> list[bytes]:
            items: list[tuple[int, bytes, int, bytes | None, int | None, str | None]] = []
            for p in parts:
                items.append((p, data, T0 + 70, b"bench-%d" % p, seq[p], None))
                seq[p] += 1
            body = bodies.multi_produce_body(items)
            return [b"router", *wire.encode(Command.PRODUCE, 1, partition=parts[0], body=body)]

        sock = worker.sockets[0]
        best = float("inf")
        try:
            for _ in range(rounds):
                msgs = [message() for _ in range(messages)]
                t0 = time.process_time()
                for frames in msgs:
                    pending: list[Any] = []
                    replies: list[Any] = []
                    worker.on_message(sock, frames, pending, replies)
                    worker.commit(pending)
                    for reply in replies:
                        reply_frames(reply)
                best = min(best, time.process_time() - t0)
        finally:
            for _, _, plog in worker.all_logs():
                plog.close()
            for s in worker.sockets:
                s.close(0)
        return best * 1e9 / (messages * len(parts) * batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--batch", type=int, default=1000, help="records per batch (default 1000)")
    ap.add_argument("--fsync", default="never", help="the turn's fsync policy (default never: CPU, not the disk)")
    ap.add_argument("--records", type=int, default=200_000, help="records of the rollup partition")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tune_malloc()  # as the worker process does
    data = blob(args.batch)
    out = {
        "batch": args.batch, "bytes_per_record": round(len(data) / args.batch, 1),
        "check_ns": best_ns(lambda: check_batch(data, Limits()), args.batch),
        "index_ns": best_ns(lambda: IndexBuilder(4096).feed(data), args.batch),
        "rollup_ns": rollup_ns(args.records),
        "turn_ns": turn_ns(args.batch, args.fsync),
        "fsync": args.fsync,
    }
    if args.json:
        print(json.dumps(out))
        return
    print(f"batch {args.batch} ({out['bytes_per_record']} B/record), ns of CPU per record: "
          f"check {out['check_ns']:.0f}, index {out['index_ns']:.0f}, rollup catch-up {out['rollup_ns']:.0f}, "
          f"whole turn (fsync {args.fsync}) {out['turn_ns']:.0f}")


if __name__ == "__main__":
    main()
