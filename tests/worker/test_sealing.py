"""A running cluster seals closed segments in the background while it ingests and serves reads:
every acknowledged record stays readable exactly once, in order, through search and fetch, and
q=/contains= find a unique word through the sealed blocks' index."""

from __future__ import annotations

import threading
import urllib.parse
from pathlib import Path
from typing import Any

from tests._cluster import Cluster, http, wait_until


def _cluster(tmp_path: Path) -> Cluster:
    c = Cluster(tmp_path, partitions=2, workers=1, fsync="never",
                toml_extra="[seal]\nblock_bytes = 4096\nlevel = 3\ncpu_share = 1.0\nidle_ms = 0\n")
    text = c.config_path.read_text().replace("[storage]\n", "[storage]\nsegment_bytes = 24576\n"
                                             "index_interval_bytes = 512\n")
    c.config_path.write_text(text)
    return c


def _all(c: Cluster, query: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = query + (f"&cursor={cursor}" if cursor else "")
        status, body = c.get(f"/v1/logs?direction=forward&limit=500&{q}")
        assert status == 200, body
        out += body["records"]
        cursor = body["cursor"]
        if not body["more"]:
            return out


def test_seal_under_concurrent_appends_and_reads(tmp_path: Path) -> None:
    with _cluster(tmp_path) as c:
        c.start()
        stop = threading.Event()
        errors: list[str] = []
        n_batches, per = 40, 25

        def produce() -> None:
            for b in range(n_batches):
                recs = [{"service": f"svc{i % 3}", "level": "INFO", "timestamp": 1_700_000_000_000 + b * per + i,
                         "message": f"request handled word{b * per + i}x in {i} ms"} for i in range(per)]
                status, body = c.post(recs)
                if status != 200:
                    errors.append(f"post {status} {body}")
                if b % 2 == 0:  # another tenant's partitions (their own directories) seal as well
                    status, body = c.post(recs, headers={"X-Scope-OrgID": "acme"})
                    if status != 200:
                        errors.append(f"post acme {status} {body}")

        def read() -> None:
            while not stop.is_set():
                for p in (0, 1):
                    status, body = c.get(f"/v1/partitions/{p}/records?offset=0&limit=1000")
                    offsets = [r["offset"] for r in body.get("records", [])] if status == 200 else None
                    if offsets is None or offsets != list(range(len(offsets))):
                        errors.append(f"fetch {status}: {str(body)[:300]}")
                status, body = c.get("/v1/logs?q=handled&limit=50")
                if status != 200:
                    errors.append(f"search {status} {body}")

        writer, reader = threading.Thread(target=produce), threading.Thread(target=read)
        writer.start()
        reader.start()
        writer.join(120)

        def sealed() -> bool:
            names = [p.name for d in (c.data_dir / "0", c.data_dir / "1") for p in d.iterdir()]
            plain = sum(n.endswith(".jsonl") for n in names)
            acme = [p.name for p in c.data_dir.rglob("*") if "acme" in p.parts and p.is_file()]
            return (plain == 2 and sum(n.endswith(".jsonl.zst") for n in names) >= 4
                    and sum(n.endswith(".jsonl") for n in acme) == 2 and any(n.endswith(".jsonl.zst") for n in acme))

        wait_until(sealed, timeout=90, what="every closed segment sealed")
        stop.set()
        reader.join(30)
        assert not errors, errors[:5]
        got = _all(c, "")
        want = {f"request handled word{k}x in {k % per} ms" for k in range(n_batches * per)}
        assert len(got) == n_batches * per and {r["message"] for r in got} == want
        for p in (0, 1):
            mine = [r["offset"] for r in got if r["partition"] == p]
            assert sorted(mine) == list(range(len(mine)))
        # a unique word, by q= and by contains=, found through sealed segments' index
        for k in (3, 517, n_batches * per - 1):
            for query in (f"q=WORD{k}X", "contains=" + urllib.parse.quote(f"word{k}x in")):
                hits = _all(c, query)
                assert [h["message"] for h in hits] == [f"request handled word{k}x in {k % per} ms"], query
        status, parts = c.get("/v1/partitions")
        assert status == 200
        for p in parts["partitions"]:
            assert p["sealed_segments"] >= 1 and p["stored_bytes"] < p["raw_bytes"] and p["index_bytes"] > 0

        def skipped() -> float:  # gauges refresh every heartbeat
            _, _, metrics = http("GET", f"http://127.0.0.1:{c.worker_metrics_base}/metrics")
            text = metrics.decode()
            assert "zlog_seal_segments_total" in text
            return sum(float(line.split()[-1]) for line in text.splitlines()
                       if line.startswith("zlog_index_blocks_skipped{"))

        wait_until(lambda: skipped() > 0, timeout=10, what="index skips counted")
