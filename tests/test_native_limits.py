"""Native producers under their tenant's rate, on a real cluster with cluster.curve = true: the
router charges what a producer key sends to its tenant's bucket, so a native producer offering ten
times its rate stores about its rate (and is told TENANT_RATE_LIMITED for the rest, after backing
off), everything it was told was stored is on disk, and another tenant's producer is unaffected;
a producer of a tenant with max_services is refused a service beyond it; and a gateway's PRODUCE,
ADMITted already, is not charged again."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path
from typing import Any

from tests._cluster import Cluster, _segment_bytes, http
from zlog.client.producer import AsyncProducer
from zlog.protocol.errors import ZlogError
from zlog.security import curve
from zlog.tenants.layout import tenant_root

BATCH = 20
RATE = 200  # the slow tenant's records_per_s
BURST_S = 1.0
TIMEOUT_S = 2.0  # each call's deadline: a call still refused after it is told TENANT_RATE_LIMITED
PARTITIONS = 2


def _produce(endpoint: str, keys: str, name: str, tenant: str, period_s: float, seconds: float, out: Any) -> None:
    """One native producer, in a process of its own, sending BATCH records every ``period_s``
    (open loop) for ``seconds``: what it was told was stored, and the errors it was told."""

    async def main() -> dict[str, Any]:
        root = Path(keys)
        server = curve.parse_cert((root / "server.key").read_text())["public-key"].encode()
        keypair = curve.ClientCurve(curve.load_keypair(root / f"{name}.key_secret"), server)
        # Small batches, so "one request" in the burst rule is small.
        p = AsyncProducer([endpoint], curve=keypair, max_batch_records=BATCH, node_id=name)
        await p.start()
        stored: list[str] = []
        errors: dict[str, int] = {}

        async def call(recs: list[dict[str, Any]]) -> None:
            try:
                await p.send(recs, tenant=tenant, timeout=TIMEOUT_S)
                stored.extend(str(r["message"]) for r in recs)
            except ZlogError as exc:
                errors[exc.code] = errors.get(exc.code, 0) + 1

        calls = []
        t0 = time.monotonic()
        due, n = t0, 0
        while time.monotonic() - t0 < seconds:
            due += period_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))  # pacing the offered load
            t = int(time.time() * 1000)
            recs = [{"timestamp": t, "service": f"svc{k % 4}", "message": f"{tenant} {n} {k}"} for k in range(BATCH)]
            n += 1
            calls.append(asyncio.ensure_future(call(recs)))
        await asyncio.gather(*calls)
        elapsed = time.monotonic() - t0
        await p.close()
        return {"stored": stored, "errors": errors, "offered": n * BATCH, "seconds": elapsed,
                "offered_s": seconds}

    out.put(asyncio.run(main()))


def on_disk(c: Cluster, tenant: str) -> list[str]:
    import json

    out = []
    for p in range(PARTITIONS):
        pdir = tenant_root(c.data_dir, tenant, "default") / str(p)
        for base in sorted({s.name[:20] for s in pdir.glob("*.jsonl*") if s.name[:20].isdigit()}):
            out += [json.loads(line)["message"] for line in _segment_bytes(pdir, base).splitlines()]
    return out


def refused(c: Cluster, tenant: str) -> float:
    raw = http("GET", f"http://127.0.0.1:{c.router_metrics}/metrics")[2].decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in raw.splitlines()
               if line.startswith("zlog_tenant_refused_total{") and f'tenant="{tenant}"' in line
               and 'code="TENANT_RATE_LIMITED"' in line)


def test_a_native_producer_is_held_to_its_tenants_rate_and_another_is_not(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    for name in ("server", "gateway", "worker"):
        curve.generate(keys, name)
    curve.generate(keys, "app-slow", tenant="slow")
    curve.generate(keys, "app-fast", tenant="fast")
    curve.generate(keys, "app-few", tenant="few")
    extra = f"\n[tenants.slow]\nrecords_per_s = {RATE}\nburst_s = {BURST_S}\n\n[tenants.few]\nmax_services = 2\n"
    extra += "\n[tenants.web]\nrecords_per_s = 100\nburst_s = 1.0\n"
    env = {"ZLOG_CLUSTER_CURVE": "true", "ZLOG_CLUSTER_KEYS_DIR": str(keys)}
    with Cluster(tmp_path, partitions=PARTITIONS, workers=1, toml_extra=extra, env_extra=env) as c:
        endpoint = f"tcp://127.0.0.1:{c.front}"
        ctx = multiprocessing.get_context("spawn")
        seconds = 3.0
        loads = [("app-slow", "slow", BATCH / (10 * RATE)), ("app-fast", "fast", BATCH / 1000)]  # 10x, 1000 rec/s
        queues = [ctx.Queue() for _ in loads]
        procs = [ctx.Process(target=_produce, args=(endpoint, str(keys), name, tenant, period, seconds, q))
                 for (name, tenant, period), q in zip(loads, queues, strict=True)]
        for pr in procs:
            pr.start()
        slow, fast = (q.get(timeout=seconds + 60) for q in queues)
        for pr in procs:
            pr.join(30)

        # The slow tenant: told TENANT_RATE_LIMITED (after backing off until each call's deadline),
        # and stored about its rate: at most rate x window + the burst + one request, where the
        # window runs until the last call's deadline.
        stored_slow = on_disk(c, "slow")
        window = slow["seconds"]
        bound = RATE * window + RATE * BURST_S + PARTITIONS * BATCH
        print(f"slow tenant offered {slow['offered'] / slow['offered_s']:.0f} rec/s for {slow['offered_s']:.0f} s: "
              f"stored {len(stored_slow)} records in {window:.1f} s ({len(stored_slow) / window:.0f} rec/s of its "
              f"{RATE} rec/s limit, bound {bound:.0f}), told {slow['errors']}, router refused "
              f"{refused(c, 'slow'):.0f} PRODUCE; fast tenant offered {fast['offered'] / fast['offered_s']:.0f} rec/s, "
              f"stored {len(fast['stored']) / fast['offered_s']:.0f} rec/s, told {fast['errors']}")
        assert set(slow["errors"]) == {"TENANT_RATE_LIMITED"}, slow["errors"]
        assert refused(c, "slow") > 0
        assert RATE * seconds * 0.5 <= len(stored_slow) <= bound, (len(stored_slow), bound)
        # Nothing it was told was stored is missing, and nothing is stored twice.
        assert set(slow["stored"]) <= set(stored_slow)
        assert len(set(stored_slow)) == len(stored_slow)
        # The other tenant, through the same router at the same time: every call stored.
        assert fast["errors"] == {}, fast["errors"]
        assert sorted(on_disk(c, "fast")) == sorted(fast["stored"])
        assert len(fast["stored"]) == fast["offered"] and refused(c, "fast") == 0
        assert len(fast["stored"]) / fast["offered_s"] > 0.8 * 1000

        # A gateway (an internal key) ADMITs each request and its PRODUCE is not charged again:
        # a request of the whole burst is stored, never refused by a second charge.
        status, body = c.post([{"service": "web", "message": f"web {i}"} for i in range(100)],
                              headers={"X-Scope-OrgID": "web"})
        assert status == 200, body
        assert refused(c, "web") == 0
        assert len(on_disk(c, "web")) == 100

        # max_services: two services are fine, a third is refused (not retried: it would not pass
        # later either), the known ones still pass, and nothing of the refused call is stored.
        told = asyncio.run(_few(endpoint, keys))
        assert told == ["stored", "stored", "TOO_MANY_SERVICES", "stored"], told
        assert sorted(on_disk(c, "few")) == ["few 0", "few 1", "few 3"]


async def _few(endpoint: str, keys: Path) -> list[str]:
    server = curve.parse_cert((keys / "server.key").read_text())["public-key"].encode()
    p = AsyncProducer([endpoint], curve=curve.ClientCurve(curve.load_keypair(keys / "app-few.key_secret"), server))
    await p.start()
    told = []
    try:
        for i, service in enumerate(("a", "b", "c", "a")):
            try:
                await p.send([{"service": service, "message": f"few {i}"}], tenant="few", timeout=5)
                told.append("stored")
            except ZlogError as exc:
                told.append(exc.code)
    finally:
        await p.close()
    return told

