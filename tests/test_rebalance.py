"""Reassignment with real processes: a worker that joins gets replicas, a drain moves them off.

R=2 on a cluster configured with two workers; a third worker (id 2) starts later. Under light
acks=all load it must receive replicas until loads are even (each new replica catching up and
joining the ISR before the replica it replaces is dropped); ``zlog worker drain 0`` must then
move every replica off worker 0. Every acknowledged record must be stored exactly once, at its
acknowledged offset, on every replica of its partition at the end.
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

from tests._cluster import Cluster, free_ports, wait_until
from tests._etcd import EtcdServer
from tests.test_replication import replica_lines, service_for
from zlog.client import Producer
from zlog.protocol.errors import ZlogError
from zlog.replication.coordination import Coordinator

PARTITIONS = 3


@pytest.mark.cluster
def test_a_joining_worker_gets_replicas_and_a_drain_moves_them_off_losing_nothing(tmp_path: Path) -> None:
    with EtcdServer(tmp_path / "etcd") as etcd:
        env = {
            "ZLOG_STORAGE_REPLICATION_FACTOR": "2",
            "ZLOG_CLUSTER_WORKERS": "2",  # the initial placement; worker 2 joins later
            "ZLOG_CLUSTER_ETCD": etcd.endpoint,
            "ZLOG_CLUSTER_REPLICATION_PORT_BASE": str(free_ports(3)),
            "ZLOG_CLUSTER_LEASE_TTL_MS": "2000",
            "ZLOG_STORAGE_REPLICA_LAG_MS": "1500",
        }
        coord = Coordinator((etcd.endpoint,), "/zlog")
        cluster = Cluster(tmp_path, partitions=PARTITIONS, workers=3, env_extra=env)
        joiner = cluster.procs.pop("storage-2")
        with cluster as c:
            def settled() -> bool:
                parts = coord.snapshot().partitions
                return len(parts) == PARTITIONS and all(
                    not s.target and set(s.isr) == set(s.replicas) for s, _ in parts.values())
            wait_until(settled, timeout=20, what="full ISRs")
            services = [service_for(p, PARTITIONS) for p in range(PARTITIONS)]
            acked: dict[str, tuple[int, int]] = {}
            errors: Counter[str] = Counter()
            stop = threading.Event()

            def load() -> None:
                n = 0
                with Producer([f"tcp://127.0.0.1:{c.front}"], delivery_timeout_s=15.0, linger_ms=1) as prod:
                    while not stop.is_set():
                        seqs = [f"{n}-{j}" for j in range(5)]
                        recs = [{"timestamp": int(time.time() * 1000), "service": services[n % PARTITIONS],
                                 "message": "m", "labels": {"seq": s}} for s in seqs]
                        n += 1
                        try:
                            placed = prod.send(recs).result(20)
                        except ZlogError as exc:
                            errors[exc.code] += 1
                            continue
                        acked.update(zip(seqs, placed, strict=True))
                        time.sleep(0.01)

            thread = threading.Thread(target=load, daemon=True)
            thread.start()
            try:
                time.sleep(1.0)
                c.procs["storage-2"] = joiner
                c.start("storage-2", wait=False)

                def spread() -> bool:
                    parts = coord.snapshot().partitions
                    loads = Counter(r for s, _ in parts.values() for r in s.replicas)
                    return settled() and loads[2] == 2 and max(loads.values()) == 2
                wait_until(spread, timeout=30, what="worker 2 to get its share of replicas")
                held = {n: s.replicas for n, (s, _) in coord.snapshot().partitions.items()}
                time.sleep(0.5)
                out = subprocess.run([sys.executable, "-m", "zlog", "worker", "drain", "0", "--wait", "25"],
                                     env=c.env, capture_output=True, text=True, timeout=40, check=False)
                assert out.returncode == 0, out.stdout[-2000:] + out.stderr
                parts = coord.snapshot().partitions
                assert all(0 not in s.replicas and len(s.replicas) == 2 for s, _ in parts.values()), parts
                assert all(set(s.isr) == {1, 2} for s, _ in parts.values()), parts
                time.sleep(0.5)
            finally:
                stop.set()
                thread.join(30)
            report = json.loads(subprocess.run([sys.executable, "-m", "zlog", "status", "--json"], env=c.env,
                                               capture_output=True, timeout=30, check=False).stdout)
            assert all(p["draining"] == [0] and p["reassigning"] is False and sorted(p["replicas"]) == [1, 2]
                       for p in report["partitions"]), report["partitions"]
            # the worker that joined beyond cluster.workers has its own row, with its host
            assert [(w["id"], w["up"], w["host"]) for w in report["workers"]] == [
                (0, True, "127.0.0.1"), (1, True, "127.0.0.1"), (2, True, "127.0.0.1")], report["workers"]
            assert report["workers"][2]["expected_partitions"] == [0, 1, 2] and report["workers"][2]["disk_bytes"]
            print(f"replicas after the join {held}; acknowledged {len(acked)} records; errors {dict(errors)}")
            # Every completed move dropped the old replica only with all of the new set in sync.
            changes = [json.loads(line) for w in range(3)
                       for line in c.procs[f"storage-{w}"].log_path.read_text().splitlines()
                       if line.startswith("{") and "partition state changed" in line]
            done = [e for e in changes if e.get("why") == "complete"]
            assert len(done) >= 4 and len([e for e in changes if e.get("why") == "reassign"]) == len(done), changes
            assert all(sorted(e["isr"]) == sorted(e["replicas"]) and not e["target"] for e in done), done
            assert len(acked) > 100

            wait_until(lambda: all(len({len(replica_lines(tmp_path, w, p)) for w in (1, 2)}) == 1
                                   for p in range(PARTITIONS)), timeout=10, what="replicas level")
            for p in range(PARTITIONS):
                logs = [replica_lines(tmp_path, w, p) for w in (1, 2)]
                assert logs[0] == logs[1], f"replicas of partition {p} differ"
                seqs = [json.loads(line)["labels"]["seq"] for line in logs[0]]
                counts = Counter(seqs)
                for s, (part, off) in acked.items():
                    if part == p:
                        assert counts[s] == 1, f"acknowledged record {s} stored {counts[s]} times"
                        assert seqs[off] == s, f"record {s} not at its acknowledged offset {off}"
