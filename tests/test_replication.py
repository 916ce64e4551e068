"""Replication on one host with real processes: R=3 on 3 workers, a real etcd, leaders SIGKILLed.

Under acks=all load, the leader of a partition is SIGKILLed every few seconds and restarted
(sometimes before its lease expires, so it reclaims its partitions with a new epoch; sometimes
after, so another replica is elected). Every acknowledged record must then be stored exactly
once, in the same per-partition order, on every replica in the ISR; writes to the partition
must resume within lease TTL + 2 s; failover times are printed (p50/max).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests._cluster import Cluster, free_ports, wait_until
from tests._etcd import EtcdServer, fault_leader
from zlog.client import Producer
from zlog.protocol.errors import ZlogError
from zlog.protocol.hashing import Partitioner
from zlog.replication.coordination import Coordinator

LEASE_MS = 2000
PARTITIONS = 3


def service_for(partition: int, partitions: int) -> str:
    part = Partitioner(partitions)
    return next(f"svc-{i}" for i in range(10_000) if part(f"svc-{i}".encode()) == partition)


def replica_dir(root: Path, worker: int, partition: int, tenant: str | None = None) -> Path:
    d = root / "data" / f"replica-{worker}"
    return (d if tenant is None else d / "tenants" / tenant) / str(partition)


def replica_lines(root: Path, worker: int, partition: int, tenant: str | None = None) -> list[bytes]:
    d = replica_dir(root, worker, partition, tenant)
    return [line for seg in sorted(d.glob("*.jsonl")) for line in seg.read_bytes().splitlines()]


def data_digest(root: Path, worker: int, partition: int, tenant: str | None = None) -> str:
    d = replica_dir(root, worker, partition, tenant)
    h = hashlib.sha256()
    for seg in sorted(d.glob("*.jsonl")):
        h.update(seg.name.encode() + seg.read_bytes())
    return h.hexdigest()


@pytest.mark.cluster
def test_leaders_killed_under_acks_all_lose_nothing(tmp_path: Path) -> None:
    with EtcdServer(tmp_path / "etcd") as etcd:
        env = {
            "ZLOG_STORAGE_REPLICATION_FACTOR": "3",
            "ZLOG_CLUSTER_ETCD": etcd.endpoint,
            "ZLOG_CLUSTER_REPLICATION_PORT_BASE": str(free_ports(3)),
            "ZLOG_CLUSTER_LEASE_TTL_MS": str(LEASE_MS),
            "ZLOG_STORAGE_REPLICA_LAG_MS": "1500",
        }
        coord = Coordinator((etcd.endpoint,), "/zlog")
        with Cluster(tmp_path, partitions=PARTITIONS, workers=3, env_extra=env) as c:
            wait_until(lambda: all(len(s.isr) == 3 for s, _ in coord.snapshot().partitions.values())
                       and len(coord.snapshot().partitions) == PARTITIONS, timeout=20, what="full ISRs")
            services = [service_for(p, PARTITIONS) for p in range(PARTITIONS)]
            acked: dict[str, tuple[int, int]] = {}  # seq -> (partition, offset)
            ack_times: list[float] = []  # acknowledgements of partition 0, for the failover gaps
            errors: Counter[str] = Counter()
            stop = threading.Event()
            lock = threading.Lock()

            def load(k: int) -> None:
                n = 0
                with Producer([f"tcp://127.0.0.1:{c.front}"], delivery_timeout_s=15.0, linger_ms=1) as prod:
                    while not stop.is_set():
                        svc = services[n % PARTITIONS]
                        seqs = [f"{k}-{n}-{j}" for j in range(10)]
                        recs = [{"timestamp": int(time.time() * 1000), "service": svc, "message": "m",
                                 "labels": {"seq": s}} for s in seqs]
                        n += 1
                        try:
                            placed = prod.send(recs).result(20)
                        except ZlogError as exc:
                            errors[exc.code] += 1
                            continue
                        with lock:
                            for s, where in zip(seqs, placed, strict=True):
                                acked[s] = where
                            if placed[0][0] == 0:
                                ack_times.append(time.monotonic())

            threads = [threading.Thread(target=load, args=(k,), daemon=True) for k in range(3)]
            for t in threads:
                t.start()
            kills: list[float] = []
            try:
                time.sleep(1.5)
                # SIGKILL, restart inside the lease; SIGKILL, restart after it; SIGSTOP past the
                # lease (a hung leader: fenced, elected away, and on SIGCONT it must not acknowledge).
                for i, (how, pause) in enumerate((("kill", 0.3), ("kill", LEASE_MS / 1000 + 1.5),
                                                  ("stop", LEASE_MS / 1000 + 1.5))):
                    kills.append(fault_leader(c, coord, "0", how, pause)[1])
                    killed = kills[-1]
                    # Load goes on until partition 0 acknowledges again (bounded), then a little more.
                    deadline = killed + LEASE_MS / 1000 + 4.0
                    while time.monotonic() < deadline and not any(t > killed for t in ack_times[-50:]):
                        time.sleep(0.05)
                    time.sleep(1.5 if i < 2 else 0.5)
            finally:
                stop.set()
                for t in threads:
                    t.join(30)
            gaps = []
            for k in kills:
                after = [t for t in ack_times if t > k]
                assert after, (f"writes to partition 0 never resumed after the kill at {k - kills[0]:.2f}s "
                               f"(kills {[round(x - kills[0], 2) for x in kills]}, last ack "
                               f"{ack_times[-1] - kills[0] if ack_times else None}, errors {dict(errors)})")
                gaps.append(after[0] - k)
            print(f"failover gaps (s): {[round(g, 2) for g in gaps]} p50 {statistics.median(gaps):.2f} "
                  f"max {max(gaps):.2f}; acknowledged {len(acked)} records; errors {dict(errors)}")
            assert max(gaps) < LEASE_MS / 1000 + 2.0 + 1.0  # + the producer's retry back-off
            assert len(acked) > 500

            # Everything settles: every replica back in the ISR with the leader's log end.
            def settled() -> bool:
                parts = coord.snapshot().partitions
                return all(len(s.isr) == 3 for s, _ in parts.values()) and all(
                    len({len(replica_lines(tmp_path, w, p)) for w in range(3)}) == 1 for p in range(PARTITIONS))
            wait_until(settled, timeout=20, what="every replica back in sync")

            for p in range(PARTITIONS):
                logs = [replica_lines(tmp_path, w, p) for w in coord.snapshot().partitions[str(p)][0].isr]
                assert all(lg == logs[0] for lg in logs), f"replicas of partition {p} differ"
                seqs = [json.loads(line)["labels"]["seq"] for line in logs[0]]
                counts = Counter(seqs)
                mine = {s: off for s, (part, off) in acked.items() if part == p}
                for s, off in mine.items():
                    assert counts[s] == 1, f"acknowledged record {s} stored {counts[s]} times"
                    assert seqs[off] == s, f"record {s} not at its acknowledged offset {off}"
                assert len({data_digest(tmp_path, w, p) for w in range(3)}) == 1


@pytest.mark.cluster
def test_acks_all_needs_min_insync_replicas_and_acks_leader_does_not(tmp_path: Path) -> None:
    with EtcdServer(tmp_path / "etcd") as etcd:
        env = {
            "ZLOG_STORAGE_REPLICATION_FACTOR": "2",
            "ZLOG_CLUSTER_ETCD": etcd.endpoint,
            "ZLOG_CLUSTER_REPLICATION_PORT_BASE": str(free_ports(2)),
            "ZLOG_CLUSTER_LEASE_TTL_MS": "1000",
            "ZLOG_STORAGE_REPLICA_LAG_MS": "800",
        }
        coord = Coordinator((etcd.endpoint,), "/zlog")
        with Cluster(tmp_path, partitions=2, workers=2, env_extra=env) as c:
            wait_until(lambda: len(coord.snapshot().partitions) == 2
                       and all(len(s.isr) == 2 for s, _ in coord.snapshot().partitions.values()),
                       timeout=20, what="full ISRs")
            svc = service_for(0, 2)
            rec = [{"timestamp": int(time.time() * 1000), "service": svc, "message": "hello"}]
            # The leader's own ISR follows etcd's within a loop turn; a handoff to the preferred
            # replica may be under way: the first write waits for both.
            wait_until(lambda: c.post(rec)[0] == 200, timeout=10, what="the first acks=all write")
            wait_until(lambda: len({s.leader for s, _ in coord.snapshot().partitions.values()}) == 2, timeout=10,
                       what="each worker leading its preferred partition")
            assert c.post(rec)[0] == 200
            leader = coord.snapshot().partitions["0"][0].leader
            assert leader is not None
            follower = 1 - leader
            status, parts = c.get("/v1/partitions")
            p0 = parts["partitions"][0]
            assert status == 200 and p0["leader"] == leader and p0["replicas"] == [0, 1] and p0["isr"] == [0, 1]
            n0 = p0["next_offset"]
            assert p0["leader_epoch"] >= 0 and p0["high_watermark"] == n0 >= 2
            assert c.post(rec, path="/v1/logs?acks=most")[0] == 400
            out = subprocess.run([sys.executable, "-m", "zlog", "status", "--json"], env=c.env,
                                 capture_output=True, timeout=30, check=False)
            report = json.loads(out.stdout)
            s0 = report["partitions"][0]
            assert (s0["leader"], s0["replicas"], s0["isr"], s0["high_watermark"]) == (leader, [0, 1], [0, 1], n0)
            assert s0["leader_epoch"] == p0["leader_epoch"]
            assert [(w["id"], w["up"]) for w in report["workers"]] == [(0, True), (1, True)]
            assert all(w["pid"] and w["host"] for w in report["workers"])

            c.kill(f"storage-{follower}")
            # The leader's own view (what it checks writes against), not only etcd's.
            wait_until(lambda: c.get("/v1/partitions")[1]["partitions"][0]["isr"] == [leader], timeout=10,
                       what="the ISR to shrink")
            status, headers, raw = http_post(c, rec, "")
            assert status == 503 and int(headers["Retry-After"]) >= 1, raw
            err = json.loads(raw)
            assert "NOT_ENOUGH_REPLICAS" in json.dumps(err)
            status, _, raw = http_post(c, rec, "?acks=leader")
            assert status == 200, raw

            c.start(f"storage-{follower}", wait=False)
            wait_until(lambda: coord.snapshot().partitions["0"][0].isr == (0, 1), timeout=20, what="the ISR to grow")
            wait_until(lambda: c.post(rec)[0] == 200, timeout=10, what="acks=all writes again")
            wait_until(lambda: len(replica_lines(tmp_path, 1, 0)) == len(replica_lines(tmp_path, 0, 0)) >= n0 + 2,
                       timeout=10, what="the follower to catch up")
            assert replica_lines(tmp_path, 0, 0) == replica_lines(tmp_path, 1, 0)

            # Drain: every leadership leaves worker 0 and writes go on; undrain: it takes back
            # the partition it is the preferred replica of.
            zlog = [sys.executable, "-m", "zlog", "worker"]
            out = subprocess.run([*zlog, "drain", "0", "--wait", "15"], env=c.env, capture_output=True,
                                 timeout=30, check=False)
            assert out.returncode == 0, out.stdout + out.stderr
            assert all(s.leader == 1 for s, _ in coord.snapshot().partitions.values())
            wait_until(lambda: c.post(rec)[0] == 200, timeout=10, what="writes while worker 0 is drained")
            subprocess.run([*zlog, "undrain", "0"], env=c.env, capture_output=True, timeout=30, check=True)
            wait_until(lambda: coord.snapshot().partitions["0"][0].leader == 0, timeout=15,
                       what="the preferred leader back")
            wait_until(lambda: c.post(rec)[0] == 200, timeout=10, what="writes after the undrain")


def http_post(c: Cluster, records: list[dict[str, object]], query: str) -> tuple[int, dict[str, str], bytes]:
    from tests._cluster import http

    return http("POST", c.url + "/v1/logs" + query, json.dumps(records).encode(),
                {"Content-Type": "application/json"})


@pytest.mark.cluster
def test_losing_etcd_stops_writes_cleanly_and_they_resume_when_it_returns(tmp_path: Path) -> None:
    with EtcdServer(tmp_path / "etcd") as etcd:
        env = {
            "ZLOG_STORAGE_REPLICATION_FACTOR": "2",
            "ZLOG_CLUSTER_ETCD": etcd.endpoint,
            "ZLOG_CLUSTER_REPLICATION_PORT_BASE": str(free_ports(2)),
            "ZLOG_CLUSTER_LEASE_TTL_MS": "1500",
            "ZLOG_GATEWAY_REQUEST_TIMEOUT_MS": "1500",
            "ZLOG_GATEWAY_WAL": "false",  # a refusal is then an answer, not a 202 into the spool
        }
        coord = Coordinator((etcd.endpoint,), "/zlog")
        with Cluster(tmp_path, partitions=2, workers=2, env_extra=env) as c:
            wait_until(lambda: len(coord.snapshot().partitions) == 2
                       and all(len(s.isr) == 2 for s, _ in coord.snapshot().partitions.values()),
                       timeout=20, what="full ISRs")
            acked: list[str] = []
            attempts = iter(range(1_000_000))

            def write(i: int) -> int:
                seq = f"{i}-{next(attempts)}"  # a retried write is a new record: the check counts each once
                rec = [{"timestamp": int(time.time() * 1000), "service": service_for(i % 2, 2), "message": "m",
                        "labels": {"seq": seq}}]
                status, _ = c.post(rec)
                if status == 200:
                    acked.append(seq)
                return status

            for i in range(20):
                wait_until(lambda i=i: write(i) == 200, timeout=10, what="a write")
            etcd.stop()
            t0 = time.monotonic()
            statuses = []
            i = 20
            # Within two thirds of the lease every leader stops acknowledging; a write then gets a
            # 503 once the gateway's deadline (1.5 s here) passes: nothing hangs, nothing flaps.
            while len([s for s in statuses if s != 200]) < 2 and time.monotonic() - t0 < 15:
                statuses.append(write(i))
                i += 1
            first = next(k for k, s in enumerate(statuses) if s != 200)
            assert set(statuses[first:]) <= {503, 504} and 503 in statuses, statuses  # 504: the deadline won
            assert time.monotonic() - t0 < 1.5 + 2 * 1.5 + 2, "writes did not stop within the lease"
            etcd.start()
            wait_until(lambda: write(10_000 + len(acked)) == 200, timeout=20, what="writes to resume")
            stored = Counter(json.loads(line)["labels"]["seq"]
                             for w in range(2) for p in range(2)
                             if w == coord.snapshot().partitions[str(p)][0].leader
                             for line in replica_lines(tmp_path, w, p))
            assert all(stored[s] == 1 for s in acked), "an acknowledged record is missing or doubled"
