"""Re-replication with real processes: a worker lost for good, and a replica that starts behind
its leader's log start.

1. R=3 on 4 workers under acks=all load: worker 2 is SIGKILLed and stays away longer than
   ``storage.replica_dead_after_ms``. Every partition must get back to 3 in-sync replicas on the
   live workers, every acknowledged record stored once at its offset on each, the data files
   identical. Worker 2 then returns: it drops its old copies (no longer a replica: never led or
   read), balancing gives it replicas again, and they end identical too.
2. Tiny segments and retention by size: the new replica a re-replication adds has nothing and
   its leader no longer has offset 0 (R=2 on 3 workers, the follower of partition 0 SIGKILLed
   for good, the third worker takes its place); it is told OFFSET_OUT_OF_RANGE, starts its log at the
   leader's log start and catches up from there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests._cluster import Cluster, _segment_bytes, free_ports, http, wait_until
from tests._etcd import EtcdServer
from tests.test_replication import service_for
from zlog.client import Producer
from zlog.protocol.errors import ZlogError
from zlog.replication.coordination import Coordinator, Snapshot

DEAD_AFTER_MS = 3000


def _env(etcd: EtcdServer, workers: int, r: int) -> dict[str, str]:
    return {
        "ZLOG_STORAGE_REPLICATION_FACTOR": str(r),
        "ZLOG_CLUSTER_ETCD": etcd.endpoint,
        "ZLOG_CLUSTER_REPLICATION_PORT_BASE": str(free_ports(workers)),
        "ZLOG_CLUSTER_LEASE_TTL_MS": "2000",
        "ZLOG_STORAGE_REPLICA_LAG_MS": "1500",
        "ZLOG_STORAGE_REPLICA_DEAD_AFTER_MS": str(DEAD_AFTER_MS),
    }


def _pdir(root: Path, worker: int, p: int) -> Path:
    return root / "data" / f"replica-{worker}" / str(p)


def _segments(root: Path, worker: int, p: int) -> dict[str, bytes]:
    """base -> a segment's lines (plain or sealed) of worker's replica of p."""
    d = _pdir(root, worker, p)
    bases = sorted({f.name[:20] for f in d.glob("*.jsonl*") if f.name[:20].isdigit()})
    return {b: _segment_bytes(d, b) for b in bases}


def _lines(root: Path, worker: int, p: int) -> list[bytes]:
    return [line for data in _segments(root, worker, p).values() for line in data.splitlines()]


def _metric(c: Cluster, worker: int, sample: str) -> float:
    """One sample (name with labels, as exposed) of a worker's /metrics; 0 when absent."""
    text = http("GET", f"http://127.0.0.1:{c.worker_metrics_base + worker}/metrics")[2].decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(sample + " "))


def _settled(snap: Snapshot, partitions: int, r: int) -> bool:
    return len(snap.partitions) == partitions and all(
        len(s.replicas) == r and set(s.isr) == set(s.replicas) and not s.target and s.leader in snap.workers
        for s, _ in snap.partitions.values())


class Load:
    """acks=all writers, one record batch at a time; what was acknowledged, and where."""

    def __init__(self, front: int, services: list[str]) -> None:
        self.front, self.services = front, services
        self.acked: dict[str, tuple[int, int]] = {}
        self.errors: Counter[str] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        with Producer([f"tcp://127.0.0.1:{self.front}"], delivery_timeout_s=15.0, linger_ms=1) as prod:
            while not self.stop.is_set():
                seqs = [f"{n}-{j}" for j in range(5)]
                recs = [{"timestamp": int(time.time() * 1000), "service": self.services[n % len(self.services)],
                         "message": "m" * 60, "labels": {"seq": s}} for s in seqs]
                n += 1
                try:
                    placed = prod.send(recs).result(20)
                except ZlogError as exc:
                    self.errors[exc.code] += 1
                    continue
                self.acked.update(zip(seqs, placed, strict=True))
                time.sleep(0.01)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def _check_replicas(root: Path, snap: Snapshot, acked: dict[str, tuple[int, int]], partitions: int) -> None:
    for p in range(partitions):
        replicas = snap.partitions[str(p)][0].replicas
        wait_until(lambda: len({len(_lines(root, w, p)) for w in replicas}) == 1,  # noqa: B023
                   timeout=10, what=f"the replicas of partition {p} level")
        segs = [_segments(root, w, p) for w in replicas]
        assert all(s == segs[0] for s in segs), f"replicas {replicas} of partition {p} differ"
        seqs = [json.loads(line)["labels"]["seq"] for data in segs[0].values() for line in data.splitlines()]
        counts = Counter(seqs)
        for s, (part, off) in acked.items():
            if part == p:
                assert counts[s] == 1, f"acknowledged record {s} stored {counts[s]} times on partition {p}"
                assert seqs[off] == s, f"record {s} not at its acknowledged offset {off}"


@pytest.mark.cluster
def test_a_worker_lost_for_good_has_its_replicas_rebuilt_and_its_return_is_clean(tmp_path: Path) -> None:
    partitions, dead = 4, 2
    with EtcdServer(tmp_path / "etcd") as etcd:
        coord = Coordinator((etcd.endpoint,), "/zlog")
        with Cluster(tmp_path, partitions=partitions, workers=4, env_extra=_env(etcd, 4, 3)) as c:
            wait_until(lambda: _settled(coord.snapshot(), partitions, 3), timeout=25, what="full ISRs")
            held = sorted(n for n, (s, _) in coord.snapshot().partitions.items() if dead in s.replicas)
            assert len(held) == 3
            with Load(c.front, [service_for(p, partitions) for p in range(partitions)]) as load:
                time.sleep(1.0)
                c.kill(f"storage-{dead}")
                killed = time.monotonic()

                seen_moves: list[dict[str, Any]] = []
                seen_under: list[list[int]] = []

                def rebuilt() -> bool:
                    status, body = c.get("/v1/partitions")  # what a reader sees meanwhile
                    if status == 200:
                        seen_moves.extend(body["replication"]["moves"])
                        seen_under.append(body["replication"]["under_replicated"])
                    snap = coord.snapshot()
                    return _settled(snap, partitions, 3) and all(dead not in s.replicas
                                                                 for s, _ in snap.partitions.values())
                wait_until(rebuilt, timeout=60, interval=0.2, what="every partition back to 3 in-sync replicas")
                took = time.monotonic() - killed
                # the lease (2 s) expires, then the worker must stay away DEAD_AFTER_MS before anything moves
                assert took > DEAD_AFTER_MS / 1000, took
                # between the ISR shrink and the moves every partition it held is under-replicated;
                # a move seen under way (they take tens of ms here) is a re-replication off it
                assert [int(p) for p in held] in seen_under, seen_under
                assert all(m["why"] == "rereplicate" and m["removing"] == [dead] for m in seen_moves), seen_moves
                snap = coord.snapshot()
                loads = Counter(r for s, _ in snap.partitions.values() for r in s.replicas)
                assert loads == {0: 4, 1: 4, 3: 4}, loads  # spread evenly over the live workers
                # the controller (the smallest live id) counted its steps
                assert _metric(c, 0, 'zlog_replication_reassignments_total{step="rereplicate"}') == 3
                assert _metric(c, 0, 'zlog_replication_reassignments_total{step="complete"}') == 3
                out = subprocess.run([sys.executable, "-m", "zlog", "status", "--json"], env=c.env,
                                     capture_output=True, timeout=30, check=False)
                report = json.loads(out.stdout)
                assert all(len(p["isr"]) == 3 and dead not in p["replicas"] for p in report["partitions"])
                rows = {w["id"]: w for w in report["workers"]}
                assert rows[dead]["up"] is False and all(rows[w]["up"] for w in (0, 1, 3)), rows
                assert rows[dead]["state"] == "stopped"  # it holds no replica any more: not a problem
                assert all(rows[w]["host"] == "127.0.0.1" for w in (0, 1, 3)), rows  # cluster.host, not node_id
                assert report["replication"] == {"under_replicated": [], "moves": []}, report["replication"]
                status, body = c.get("/v1/partitions")
                assert status == 200 and [(w["id"], w["up"], w["host"]) for w in body["workers"]] == [
                    (0, True, "127.0.0.1"), (1, True, "127.0.0.1"), (3, True, "127.0.0.1")], body["workers"]
                time.sleep(0.5)
                acked_before = len(load.acked)
                _check_replicas(tmp_path, coord.snapshot(), dict(load.acked), partitions)

                # It comes back: no longer a replica of anything, it drops each old copy, unless
                # balancing gave it that partition again first (then the copy is a follower's like any
                # other: truncated to the leader's epochs, caught up, in the ISR before it counts).
                c.start(f"storage-{dead}", wait=False)

                def events(worker: int, msg: str) -> list[dict[str, Any]]:
                    return [json.loads(line) for line in c.procs[f"storage-{worker}"].log_path.read_text().splitlines()
                            if line.startswith("{") and msg in line]

                def handled() -> bool:
                    dropped = {str(e["partition"]) for e in events(dead, "replica removed from this worker")}
                    given = {str(e["partition"]) for w in range(4) for e in events(w, "partition state changed")
                             if e["why"] == "reassign" and dead in e["target"]}
                    return bool(dropped) and set(held) <= dropped | given
                wait_until(handled, timeout=30, what="the returning worker to drop (or be given back) its copies")
                # ... and balancing gives it replicas again, which catch up from the leaders
                wait_until(lambda: _settled(coord.snapshot(), partitions, 3) and Counter(
                    r for s, _ in coord.snapshot().partitions.values() for r in s.replicas)[dead] == 3,
                    timeout=60, interval=0.2, what="the returned worker to get its share back")
                time.sleep(0.5)
            print(f"re-replicated in {took:.1f} s after the SIGKILL (lease 2 s + dead after "
                  f"{DEAD_AFTER_MS / 1000:g} s); acknowledged {acked_before} then {len(load.acked)} records; "
                  f"errors {dict(load.errors)}")
            assert acked_before > 100 and len(load.acked) > acked_before
            changes = [json.loads(line) for w in range(4)
                       for line in c.procs[f"storage-{w}"].log_path.read_text().splitlines()
                       if line.startswith("{") and "partition state changed" in line]
            assert len([e for e in changes if e["why"] == "rereplicate"]) == 3, changes
            _check_replicas(tmp_path, coord.snapshot(), load.acked, partitions)
            # while it was away no router sent it anything, and since its return it led only what it was given
            snap = coord.snapshot()
            assert all(s.leader != dead or dead in s.replicas for s, _ in snap.partitions.values())


@pytest.mark.cluster
def test_a_new_replica_behind_the_leaders_log_start_starts_its_log_there(tmp_path: Path) -> None:
    env = {"ZLOG_STORAGE_SEGMENT_BYTES": "2048", "ZLOG_STORAGE_RETENTION_BYTES": "8192",
           "ZLOG_STORAGE_RETENTION_CHECK_MS": "200",
           "ZLOG_SEAL_ENABLED": "false"}  # retention by plain bytes, and nothing but retention removes files
    with EtcdServer(tmp_path / "etcd") as etcd:
        coord = Coordinator((etcd.endpoint,), "/zlog")
        with Cluster(tmp_path, partitions=3, workers=3, env_extra={**_env(etcd, 3, 2), **env}) as c:
            wait_until(lambda: _settled(coord.snapshot(), 3, 2), timeout=25, what="full ISRs")
            state = coord.snapshot().partitions["0"][0]
            leader = state.leader
            assert leader is not None
            follower = next(r for r in state.replicas if r != leader)
            spare = next(w for w in range(3) if w not in state.replicas)
            with Load(c.front, [service_for(0, 3)]) as load:  # partition 0 only
                wait_until(lambda: min(_segments(tmp_path, leader, 0), default="0" * 20) > "0" * 20,
                           timeout=30, what="retention to delete the leader's first segments")
                c.kill(f"storage-{follower}")

                def moved() -> bool:
                    s = coord.snapshot().partitions["0"][0]
                    return set(s.replicas) == {leader, spare} and set(s.isr) == {leader, spare} and not s.target
                wait_until(moved, timeout=60, interval=0.2, what=f"worker {spare} to replace {follower}")
                time.sleep(1.0)
            text = c.procs[f"storage-{spare}"].log_path.read_text()
            restarts = [json.loads(line) for line in text.splitlines()
                        if line.startswith("{") and "starting the log there" in line]
            assert restarts and restarts[0]["log_end"] == 0 and restarts[0]["leader_log_start"] > 0, text[-3000:]
            start = restarts[0]["leader_log_start"]
            assert _metric(c, spare, "zlog_replication_log_restarts_total") >= 1
            wait_until(lambda: _lines(tmp_path, spare, 0)[-1:] == _lines(tmp_path, leader, 0)[-1:], timeout=10,
                       what="the new replica to reach the leader's log end")
            mine, theirs = _segments(tmp_path, spare, 0), _segments(tmp_path, leader, 0)
            assert int(min(mine)) >= start > 0
            common = set(mine) & set(theirs)  # each side applies retention by itself
            assert len(common) >= 2 and all(mine[b] == theirs[b] for b in common)
            seqs = {json.loads(line)["labels"]["seq"]: i + int(min(mine)) for i, line in
                    enumerate(line for data in mine.values() for line in data.splitlines())}
            lowest = int(min(mine))
            kept = {s: off for s, (_, off) in load.acked.items() if off >= lowest}
            assert len(kept) >= 10 and all(seqs.get(s) == off for s, off in kept.items())
            print(f"new replica started its log at {start} (leader's log start); {len(kept)} acknowledged records "
                  f"above its retention checked; errors {dict(load.errors)}")
