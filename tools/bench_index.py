"""Which full-text index for sealed segments: per-block token filters or tantivy (measured).

On ``--records`` records of the load generator (tools/loadgen.generate, encoded as stored, one
carrying a token found nowhere else), cut into the sealed format's 256 KiB blocks, builds:

- zlog's bit-sliced block token filter (zlog.storage.tokens: words of message, service, level,
  label values and trigrams of the message);
- tantivy (``pip install tantivy``; the Rust engine behind Quickwit) with one document per block
  (the same block-skipping job), and with one document per record (a search engine's usual way).

and reports index bytes as a share of the zstd-compressed blocks, build CPU per record (all
threads: ``process_time``) and the time to find the blocks that may hold the rare token.

    .venv/bin/pip install tantivy && .venv/bin/python tools/bench_index.py --records 200000
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.bench_sealed import TOKEN
from tools.loadgen import generate, percentile
from zlog.ingest.records import Limits, encode_batch
from zlog.storage import tokens


def blocks_of(n: int, block_bytes: int = 256 * 1024) -> list[list[bytes]]:
    rng = random.Random(42)
    lines: list[bytes] = []
    ts = 1_795_675_988_031
    for start in range(0, n, 500):
        recs = generate(rng, ts, min(500, n - start))
        ts = recs[-1]["timestamp"] + 100
        if start <= n // 2 < start + len(recs):
            recs[n // 2 - start]["message"] = f"payment gateway {TOKEN} timed out"
        for g in encode_batch(recs, Limits(), received_at=ts, client_ip="127.0.0.1", node_id="zlog-1").values():
            lines += g.lines
    out: list[list[bytes]] = [[]]
    size = 0
    for line in lines:
        out[-1].append(line)
        size += len(line) + 1
        if size >= block_bytes:
            out.append([])
            size = 0
    return [b for b in out if b]


def _text(line: bytes) -> str:
    rec = orjson.loads(line)
    message, others = tokens.record_fields(rec)
    return " ".join([message or "", *others])


def ms(samples: list[float]) -> str:
    samples.sort()
    return f"p50 {percentile(samples, 50) * 1000:.3f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    args = ap.parse_args()
    import tantivy

    blocks = blocks_of(args.records)
    n = sum(map(len, blocks))
    cctx = zstandard.ZstdCompressor(level=9, write_checksum=True)
    compressed = sum(len(cctx.compress(b"\n".join(b) + b"\n")) for b in blocks)
    print(f"{n:,} records in {len(blocks)} blocks, {compressed / n:.2f} B/record compressed (zstd 9)")

    c0 = time.process_time()
    keysets = [tokens.block_keys(b)[0] for b in blocks]
    m = tokens.filter_size([len(k) for k in keysets])
    filt = tokens.build_filter(keysets, m)
    cpu = time.process_time() - c0
    keys = tokens.needles([TOKEN]).keys()
    lat = []
    for _ in range(200):
        t = time.perf_counter()
        hits = tokens.candidates(filt, m, len(blocks), keys)
        lat.append(time.perf_counter() - t)
    print(f"block token filter: {len(filt) / n:.2f} B/record ({len(filt) / compressed:.1%} of compressed), "
          f"build {cpu * 1e6 / n:.2f} us/record, blocks that may match {bin(hits).count('1')}, {ms(lat)}")

    for per in ("block", "record"):
        d = Path(tempfile.mkdtemp(prefix="zlog-tantivy-"))
        try:
            sb = tantivy.SchemaBuilder()
            sb.add_text_field("body", stored=False)
            sb.add_integer_field("block", stored=True, indexed=False)
            index = tantivy.Index(sb.build(), path=str(d))
            c0 = time.process_time()
            w = index.writer(heap_size=100_000_000, num_threads=1)
            for i, b in enumerate(blocks):
                if per == "block":
                    w.add_document(tantivy.Document(body=" ".join({_text(line) for line in b}), block=i))
                else:
                    for line in b:
                        w.add_document(tantivy.Document(body=_text(line), block=i))
            w.commit()
            w.wait_merging_threads()
            cpu = time.process_time() - c0
            index.reload()
            size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
            searcher = index.searcher()
            query = index.parse_query(TOKEN, ["body"])
            lat = []
            for _ in range(200):
                t = time.perf_counter()
                found = {searcher.doc(a)["block"][0] for _, a in searcher.search(query, 100).hits}
                lat.append(time.perf_counter() - t)
            print(f"tantivy, one document per {per}: {size / n:.2f} B/record ({size / compressed:.1%} of "
                  f"compressed), build {cpu * 1e6 / n:.2f} us/record, blocks found {sorted(found)}, {ms(lat)}")
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
