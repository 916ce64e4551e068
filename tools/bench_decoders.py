"""In-process cost of each ingest format's decoding, mapping and encoding, per record.

    python tools/bench_decoders.py            # 1000 records per body, best of 3 rounds of ~1 s each

The bodies are tools/bench.py's (``bench_intake``: the same 1000 records as its /v1/logs cells);
each format runs what its gateway handler runs between reading the body and storing the groups:
/v1/logs ``body.encode_body``; Loki snappy inflation (protobuf), decoding, ``to_groups`` and the
label-group encoder (Loki JSON: the typed one-pass path); OTLP protobuf parsing, the schema view (or the full mapping) and the encoder;
bulk the one-pass parse (``bulkbody``; else ``parse_bulk`` and the grouping by index), the
encoder and the answer.

Invariants:
- CPU time (``time.process_time``), best round of three, so a busy machine inflates no figure
  more than the quietest of its rounds; the figures are read as ratios to /v1/logs of one run.
- The process runs as a gateway does (``zlog.ops.runtime``: malloc kept, start-up garbage frozen,
  the collector's thresholds raised), since the collector's passes over fresh objects would
  otherwise weigh on the formats that allocate most.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cramjam
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_intake
from bench import KEY_PH, make_records

from zlog.ingest import body as body_mod
from zlog.ingest import bulkbody, elastic, loki, lokijson, otlp, otlpview, streams
from zlog.ingest.records import Limits
from zlog.ingest.streams import LabelGroup
from zlog.ops import runtime

N = 1000


def cases() -> dict[str, Callable[[], Any]]:
    recs = make_records(N, seed=N)
    limits, push_limits = Limits(), loki.PushLimits()
    now = int(time.time() * 1000)
    kw: dict[str, Any] = {"received_at": now, "client_ip": "127.0.0.1", "node_id": "node-0"}

    def tag(i: int) -> str:
        return f"{KEY_PH.decode()}:{i}"

    v1 = orjson.dumps(recs)
    loki_json = bench_intake.body("loki-json", recs, tag)
    loki_proto = bytes(cramjam.snappy.compress_raw(bench_intake.body("loki-proto", recs, tag)))
    otlp_proto = bench_intake.body("otlp-proto", recs, tag)
    bulk = bench_intake.body("bulk", recs, tag)

    def loki_groups(streams_: list[loki.Stream]) -> Any:
        return streams.encode_groups(loki.to_groups(streams_, push_limits, now)[0], limits, **kw)

    def loki_json_case() -> Any:
        fast = lokijson.encode_push(loki_json, push_limits, limits, now_ms=now, source="loki", **kw)
        return fast if fast is not None else loki_groups(loki.decode_json(loki_json))

    def otlp_case() -> Any:
        req = otlp.decode_proto(otlp_proto)
        mapped = otlpview.view(otlp_proto, now * 1_000_000) or otlp.to_records(req, now * 1_000_000)
        return streams.encode_groups(mapped.groups, limits, **kw)

    def bulk_case() -> Any:
        fast = bulkbody.parse(bulk, "", now, limits, client_ip="127.0.0.1", node_id="node-0")
        if fast is not None:
            return bulkbody.answer(1, fast, bulkbody.seq_numbers(fast.services, dict.fromkeys(fast.groups, 0)))
        items = elastic.parse_bulk(bulk, "", now)
        batches: list[LabelGroup] = []
        for it in items:
            rec = it.record
            assert rec is not None
            if not batches or batches[-1].labels["index"] != it.index:
                batches.append(LabelGroup(rec["labels"]))
            batches[-1].entries.append((rec["timestamp"], rec["service"], rec["level"], rec["message"],
                                        rec.get("metadata")))
        streams.encode_groups(batches, limits, **kw)
        return elastic.response(1, items, list(range(len(items))))

    return {
        "/v1/logs": lambda: body_mod.encode_body(v1, "application/json", limits, **kw),
        "loki-json": loki_json_case,
        "loki-proto": lambda: loki_groups(loki.decode_proto(loki.snappy_block(loki_proto, 1 << 26))),
        "otlp-proto": otlp_case,
        "bulk": bulk_case,
    }


def per_record_us(f: Callable[[], Any], seconds: float = 1.0) -> float:
    best = float("inf")
    f()
    for _ in range(3):
        n, t0 = 0, time.process_time()
        while time.process_time() - t0 < seconds:
            f()
            n += 1
        best = min(best, (time.process_time() - t0) / n / N * 1e6)
    return best


def main() -> int:
    runtime.tune_malloc()
    chosen = cases()
    runtime.freeze_startup_garbage()
    results = {name: per_record_us(f) for name, f in chosen.items()}
    base = results["/v1/logs"]
    print(f"{'format':12s} {'us/record':>10s} {'records/s':>12s} {'x /v1/logs':>11s}")
    for name, us in results.items():
        print(f"{name:12s} {us:10.2f} {1e6 / us:12,.0f} {us / base:11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
