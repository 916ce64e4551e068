"""Every declared tenant replicated: R=3 on 3 workers, a real etcd, two tenants writing acks=all
while the leader of partition 0 is SIGKILLed (restarted inside its lease, then after it) and
then SIGSTOPped past its lease (a hung leader: fenced, elected away, and on SIGCONT it truncates
whatever it took meanwhile from each tenant's log).

Every acknowledged record of each tenant must be stored exactly once, at its acknowledged
offset, in that tenant's log on every in-sync replica (byte-identical files); each tenant must
read only its own records after the failovers; an undeclared tenant is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests._cluster import Cluster, free_ports, http, wait_until
from tests._etcd import EtcdServer, fault_leader
from tests.test_replication import data_digest, replica_lines, service_for
from zlog.client import Producer
from zlog.protocol.errors import ZlogError
from zlog.replication.coordination import Coordinator

LEASE_MS = 2000
PARTITIONS = 3
TENANTS = ("acme", "beta")


def get(c: Cluster, path: str, tenant: str) -> tuple[int, dict[str, object]]:
    status, _, body = http("GET", c.url + path, headers={"X-Scope-OrgID": tenant})
    return status, json.loads(body)


@pytest.mark.cluster
def test_every_tenants_acknowledged_records_survive_leader_kills(tmp_path: Path) -> None:
    with EtcdServer(tmp_path / "etcd") as etcd:
        env = {
            "ZLOG_STORAGE_REPLICATION_FACTOR": "3",
            "ZLOG_CLUSTER_ETCD": etcd.endpoint,
            "ZLOG_CLUSTER_REPLICATION_PORT_BASE": str(free_ports(3)),
            "ZLOG_CLUSTER_LEASE_TTL_MS": str(LEASE_MS),
            "ZLOG_STORAGE_REPLICA_LAG_MS": "1500",
        }
        declared = "\n".join(f"[tenants.{t}]" for t in TENANTS)
        coord = Coordinator((etcd.endpoint,), "/zlog")
        with Cluster(tmp_path, partitions=PARTITIONS, workers=3, env_extra=env, toml_extra=declared) as c:
            wait_until(lambda: len(coord.snapshot().partitions) == PARTITIONS
                       and all(len(s.isr) == 3 for s, _ in coord.snapshot().partitions.values()),
                       timeout=20, what="full ISRs")
            services = [service_for(p, PARTITIONS) for p in range(PARTITIONS)]
            rec = [{"timestamp": int(time.time() * 1000), "service": services[0], "message": "who?"}]
            status, _, raw = http("POST", c.url + "/v1/logs", json.dumps(rec).encode(),
                                  {"Content-Type": "application/json", "X-Scope-OrgID": "undeclared"})
            assert status == 400 and b"UNKNOWN_TENANT" in raw, raw

            acked: dict[str, dict[str, tuple[int, int]]] = {t: {} for t in TENANTS}  # seq -> (p, offset)
            ack_times: dict[str, list[float]] = {t: [] for t in TENANTS}  # of partition 0
            errors: Counter[str] = Counter()
            stop = threading.Event()
            lock = threading.Lock()

            def load(tenant: str) -> None:
                n = 0
                with Producer([f"tcp://127.0.0.1:{c.front}"], delivery_timeout_s=15.0, linger_ms=1) as prod:
                    while not stop.is_set():
                        svc = services[n % PARTITIONS]
                        seqs = [f"{tenant}-{n}-{j}" for j in range(10)]
                        recs = [{"timestamp": int(time.time() * 1000), "service": svc, "message": tenant,
                                 "labels": {"seq": s, "tenant": tenant}} for s in seqs]
                        n += 1
                        try:
                            placed = prod.send(recs, tenant=tenant).result(20)
                        except ZlogError as exc:
                            errors[exc.code] += 1
                            continue
                        with lock:
                            for s, where in zip(seqs, placed, strict=True):
                                acked[tenant][s] = where
                            if placed[0][0] == 0:
                                ack_times[tenant].append(time.monotonic())

            threads = [threading.Thread(target=load, args=(t,), daemon=True) for t in TENANTS]
            for t in threads:
                t.start()
            kills: list[float] = []
            try:
                time.sleep(1.5)
                # Restarted inside its lease (it reclaims with a new epoch), then after it (elected
                # away); then stopped past its lease and continued.
                for how, pause in (("kill", 0.3), ("kill", LEASE_MS / 1000 + 1.5), ("stop", LEASE_MS / 1000 + 1.5)):
                    kills.append(fault_leader(c, coord, "0", how, pause)[1])
                    deadline = kills[-1] + LEASE_MS / 1000 + 4.0
                    while time.monotonic() < deadline and not all(
                            any(t > kills[-1] for t in ack_times[x][-50:]) for x in TENANTS):
                        time.sleep(0.05)
                    time.sleep(1.5)
            finally:
                stop.set()
                for t in threads:
                    t.join(30)
            for tenant in TENANTS:
                for k in kills:
                    assert any(t > k for t in ack_times[tenant]), f"{tenant}: partition 0 never resumed ({errors})"
            cut = sum(1 for w in range(3) for line in c.procs[f"storage-{w}"].log_path.read_text().splitlines()
                      if "truncating a divergent tail" in line and '"tenant":null' not in line)
            print(f"acknowledged {({t: len(a) for t, a in acked.items()})}; errors {dict(errors)}; "
                  f"divergent tails of the tenants' logs truncated: {cut}")
            assert all(len(a) > 200 for a in acked.values())

            def high_watermarks(tenant: str) -> list[object]:
                status, body = get(c, "/v1/partitions", tenant)
                assert status == 200 and isinstance(body["partitions"], list)
                return [x["high_watermark"] for x in body["partitions"]]

            def settled() -> bool:
                parts = coord.snapshot().partitions
                # leadership back on each preferred replica: no handoff (whose new leader starts
                # from the high watermark its last fetch reply told it) after this point
                return all(len(s.isr) == 3 and s.leader == s.replicas[0] for s, _ in parts.values()) and all(
                    len({len(replica_lines(tmp_path, w, p, t)) for w in range(3)}) == 1
                    for p in range(PARTITIONS) for t in TENANTS) and all(
                    high_watermarks(t) == [len(replica_lines(tmp_path, 0, p, t)) for p in range(PARTITIONS)]
                    for t in TENANTS)  # each log's own, once the followers' next fetch proves they hold it
            wait_until(settled, timeout=20, what="every replica of every tenant's log back in sync")

            for tenant in TENANTS:
                for p in range(PARTITIONS):
                    isr = coord.snapshot().partitions[str(p)][0].isr
                    logs = [replica_lines(tmp_path, w, p, tenant) for w in isr]
                    assert all(lg == logs[0] for lg in logs), f"{tenant}'s replicas of partition {p} differ"
                    stored = [json.loads(line)["labels"] for line in logs[0]]
                    assert {x["tenant"] for x in stored} <= {tenant}, f"another tenant's record in {tenant}'s log"
                    seqs = [x["seq"] for x in stored]
                    counts = Counter(seqs)
                    for s, (part, off) in acked[tenant].items():
                        if part == p:
                            assert counts[s] == 1, f"{tenant}: acknowledged record {s} stored {counts[s]} times"
                            assert seqs[off] == s, f"{tenant}: record {s} not at its acknowledged offset {off}"
                    assert len({data_digest(tmp_path, w, p, tenant) for w in range(3)}) == 1
                    # Reads after the failovers: the tenant's own log, up to its high watermark.
                    status, body = get(c, f"/v1/partitions/{p}/records?offset={max(0, len(seqs) - 50)}&limit=50",
                                       tenant)
                    assert status == 200 and body["high_watermark"] == len(seqs), body.get("high_watermark")
                    got = body["records"]
                    assert isinstance(got, list)
                    assert [r["labels"]["seq"] for r in got] == seqs[-50:]
                status, body = get(c, "/v1/partitions", tenant)
                assert status == 200 and isinstance(body["partitions"], list)
                assert all(len(x["isr"]) == 3 and x["leader"] is not None for x in body["partitions"])
                out = subprocess.run([sys.executable, "-m", "zlog", "status", "--json", "--tenant", tenant], env=c.env,
                                     capture_output=True, timeout=30, check=False)
                report = json.loads(out.stdout)
                assert [x["high_watermark"] for x in report["partitions"]] == high_watermarks(tenant)
                status, body = get(c, "/v1/logs?limit=1000", tenant)
                assert status == 200 and isinstance(body["records"], list) and len(body["records"]) == 1000
                assert {r["labels"]["tenant"] for r in body["records"]} == {tenant}
            # Nothing of theirs in the default tenant's partitions.
            assert all(replica_lines(tmp_path, w, p) == [] for w in range(3) for p in range(PARTITIONS))
