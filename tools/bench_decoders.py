"""In-process cost of each ingest format's decoding, mapping and encoding, per record.

    python tools/bench_decoders.py            # 1000 records per body, best of 3 rounds of ~1 s each

Each format is timed twice in one process: its exact path alone (the record-by-record decoding,
mapping and encoding that every format had before its one-pass path, and that still answers
whatever the one-pass path does not take), and what its handler runs now.

The bodies are tools/bench.py's (``bench_intake``: the same 1000 records as its /v1/logs cells);
each format runs what its gateway handler runs between reading the body and storing the groups:
/v1/logs ``body.encode_body``; Loki snappy inflation (protobuf), the one-pass path (JSON:
``lokijson``) or decoding, ``to_groups`` and the label-group encoder; OTLP protobuf parsing, the
schema view (``otlpview``) or the full mapping, and the encoder; bulk the one-pass parse
(``bulkbody``) or ``parse_bulk``, the grouping by index and the encoder; and the answer.

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


def cases() -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """Per format: (its exact path alone, as before the one-pass paths; what its handler runs now)."""
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

    def encoder(exact: bool) -> Callable[[list[LabelGroup]], Any]:
        if exact:
            return lambda groups: streams._exact(groups, limits, **kw)
        return lambda groups: streams.encode_groups(groups, limits, **kw)

    def loki_case(body: bytes, decode: Callable[[bytes], list[loki.Stream]], exact: bool,
                  one_pass: Callable[..., Any] | None = None) -> Callable[[], Any]:
        encode = encoder(exact)

        def run() -> Any:
            if one_pass is not None and not exact:
                fast = one_pass(body, push_limits, limits, now_ms=now, source="loki", **kw)
                if fast is not None:
                    return fast
            return encode(loki.to_groups(decode(body), push_limits, now)[0])
        return run

    def loki_proto_decode(body: bytes) -> list[loki.Stream]:
        return loki.decode_proto(loki.snappy_block(body, 1 << 26))

    def otlp_case(exact: bool) -> Callable[[], Any]:
        encode = encoder(exact)

        def run() -> Any:
            req = otlp.decode_proto(otlp_proto)
            mapped = None if exact else otlpview.view(otlp_proto, now * 1_000_000)
            return encode((mapped or otlp.to_records(req, now * 1_000_000)).groups)
        return run

    def bulk_case(exact: bool) -> Callable[[], Any]:
        encode = encoder(exact)

        def run() -> Any:
            fast = None if exact else bulkbody.parse(bulk, "", now, limits, client_ip="127.0.0.1", node_id="node-0")
            if fast is not None:
                return bulkbody.answer(1, fast, bulkbody.seq_numbers(fast.services, dict.fromkeys(fast.groups, 0)))
            items = elastic.parse_bulk(bulk, "", now)
            encode(elastic.label_groups(items))
            return elastic.response(1, items, list(range(len(items))))
        return run

    def v1_case() -> Any:
        return body_mod.encode_body(v1, "application/json", limits, **kw)

    return {
        "/v1/logs": (v1_case, v1_case),
        "loki-json": (loki_case(loki_json, loki.decode_json, True),
                      loki_case(loki_json, loki.decode_json, False, lokijson.encode_push)),
        "loki-proto": (loki_case(loki_proto, loki_proto_decode, True), loki_case(loki_proto, loki_proto_decode, False)),
        "otlp-proto": (otlp_case(True), otlp_case(False)),
        "bulk": (bulk_case(True), bulk_case(False)),
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
    results = {name: (per_record_us(exact), per_record_us(now)) for name, (exact, now) in chosen.items()}
    base = results["/v1/logs"][1]
    print(f"{'format':12s} {'exact us/rec':>12s} {'now us/rec':>11s} {'now rec/s':>11s} {'exact x v1':>11s} "
          f"{'now x v1':>9s}")
    for name, (exact, now) in results.items():
        print(f"{name:12s} {exact:12.2f} {now:11.2f} {1e6 / now:11,.0f} {exact / base:11.2f} {now / base:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
