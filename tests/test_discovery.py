"""Discovery through etcd with real processes: R=3 on 3 workers, 2 routers, a real etcd.

- A producer given one router's address learns the other from etcd; that router is SIGKILLed
  under acks=all load: no acknowledged record is lost, and writes go on through the other.
- The leader of a partition is SIGKILLed: the producer's writes succeed again within one watch
  event of etcd naming the new leader (measured against a watch of the test's own).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest

from tests._cluster import Cluster, free_ports, http, wait_until
from tests._etcd import EtcdServer
from tests.test_replication import data_digest, replica_lines, service_for
from zlog.client import Producer
from zlog.protocol.errors import ZlogError
from zlog.replication.coordination import Coordinator
from zlog.replication.discovery import View
from zlog.replication.watch import Discovery

LEASE_MS = 2000
PARTITIONS = 3


def replicated(etcd: EtcdServer) -> dict[str, str]:
    return {
        "ZLOG_STORAGE_REPLICATION_FACTOR": "3",
        "ZLOG_CLUSTER_ETCD": etcd.endpoint,
        "ZLOG_CLUSTER_REPLICATION_PORT_BASE": str(free_ports(3)),
        "ZLOG_CLUSTER_LEASE_TTL_MS": str(LEASE_MS),
        "ZLOG_STORAGE_REPLICA_LAG_MS": "1500",
    }


@contextmanager
def replicated_cluster(root: Path, routers: int) -> Iterator[tuple[EtcdServer, Coordinator, Cluster]]:
    """A real etcd and R=3 on 3 workers with ``routers`` routers, every ISR full."""
    with EtcdServer(root / "etcd") as etcd:
        coord = Coordinator((etcd.endpoint,), "/zlog")
        with Cluster(root, partitions=PARTITIONS, workers=3, routers=routers, env_extra=replicated(etcd)) as c:
            wait_until(lambda: settled(coord, routers), timeout=30, what="full ISRs, every router registered")
            yield etcd, coord, c


def settled(coord: Coordinator, routers: int) -> bool:
    snap = coord.snapshot()
    return (len(snap.partitions) == PARTITIONS and all(len(s.isr) == 3 and s.leader is not None
                                                       for s, _ in snap.partitions.values())
            and len(snap.routers) == routers)


class Load:
    """Producer threads writing acks=all batches of 10 labelled records, round the partitions."""

    def __init__(self, c: Cluster, etcd: EtcdServer, threads: int = 2, partitions: tuple[int, ...] = (0, 1, 2)) -> None:
        self.services = [service_for(p, PARTITIONS) for p in partitions]
        self.acked: dict[str, tuple[int, int]] = {}
        self.ack_times: dict[int, list[float]] = {p: [] for p in range(PARTITIONS)}
        self.errors: Counter[str] = Counter()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        # Only router 0 is named: any other is learned from etcd.
        self.producers = [Producer([f"tcp://127.0.0.1:{c.front}"], delivery_timeout_s=15.0, linger_ms=1,
                                   etcd=(etcd.endpoint,)) for _ in range(threads)]
        self.threads = [threading.Thread(target=self.run, args=(k,), daemon=True) for k in range(threads)]

    def run(self, k: int) -> None:
        prod, n = self.producers[k], 0
        while not self.stop.is_set():
            svc = self.services[n % len(self.services)]
            seqs = [f"{k}-{n}-{j}" for j in range(10)]
            recs = [{"timestamp": int(time.time() * 1000), "service": svc, "message": "m", "labels": {"seq": s}}
                    for s in seqs]
            n += 1
            try:
                placed = prod.send(recs).result(20)
            except ZlogError as exc:
                with self.lock:
                    self.errors[exc.code] += 1
                continue
            now = time.monotonic()
            with self.lock:
                for s, where in zip(seqs, placed, strict=True):
                    self.acked[s] = where
                self.ack_times[placed[0][0]].append(now)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        for p in self.producers:
            p.close()

    def acks_after(self, partition: int, t: float) -> list[float]:
        with self.lock:
            return [x for x in self.ack_times[partition] if x > t]


def check_stored_once(root: Path, coord: Coordinator, acked: dict[str, tuple[int, int]]) -> None:
    def in_sync() -> bool:
        parts = coord.snapshot().partitions
        return all(len(s.isr) == 3 for s, _ in parts.values()) and all(
            len({len(replica_lines(root, w, p)) for w in range(3)}) == 1 for p in range(PARTITIONS))

    wait_until(in_sync, timeout=30, what="every replica back in sync")
    for p in range(PARTITIONS):
        logs = [replica_lines(root, w, p) for w in range(3)]
        assert all(lg == logs[0] for lg in logs), f"replicas of partition {p} differ"
        seqs = [json.loads(line).get("labels", {}).get("seq") for line in logs[0]]
        counts = Counter(seqs)
        for s, (part, off) in acked.items():
            if part == p:
                assert counts[s] == 1, f"acknowledged record {s} stored {counts[s]} times"
                assert seqs[off] == s, f"record {s} not at its acknowledged offset {off}"
        assert len({data_digest(root, w, p) for w in range(3)}) == 1


@pytest.mark.cluster
def test_a_router_killed_under_load_loses_nothing_and_writes_go_on_through_another(tmp_path: Path) -> None:
    with replicated_cluster(tmp_path, routers=2) as (etcd, coord, c):
        with Load(c, etcd) as load:
            # Each producer learned router 1 from etcd, though only router 0 was named.
            wait_until(lambda: all(len(p.routers) == 2 for p in load.producers), timeout=5,
                       what="both routers connected")
            time.sleep(1.5)
            before = len(load.acked)
            killed = time.monotonic()
            c.kill("router")
            # Writes go on through router 1: acknowledgements of every partition after the kill.
            wait_until(lambda: all(load.acks_after(p, killed + 0.5) for p in range(PARTITIONS)), timeout=5,
                       what="writes through the other router")
            # Router 0's key goes with its lease; the producers drop it.
            wait_until(lambda: set(coord.snapshot().routers) == {1}, timeout=LEASE_MS / 1000 + 3,
                       what="router 0's key to expire")
            wait_until(lambda: all(p.routers == [f"tcp://127.0.0.1:{c.fronts[1]}"] for p in load.producers),
                       timeout=3, what="router 0 dropped")
            time.sleep(1.0)
            gaps = {p: load.acks_after(p, killed)[0] - killed for p in range(PARTITIONS)}
        print(f"router kill: acknowledged {len(load.acked)} records ({before} before the kill); "
              f"first ack after the kill per partition (s): {({p: round(g, 3) for p, g in gaps.items()})}; "
              f"errors {dict(load.errors)}")
        assert not load.errors, f"sends failed for good: {dict(load.errors)}"
        assert len(load.acked) > before + 100
        # The gateway answers through router 1 and lists the routers etcd knows.
        status, body = c.get("/v1/partitions")
        assert status == 200, body
        assert [r["id"] for r in body["routers"]] == [1]
        assert c.post([{"timestamp": int(time.time() * 1000), "service": "after", "message": "x"}])[0] == 200
        # Router 1's view of etcd is current (progress notifications every second).
        _, _, text = http("GET", f"http://127.0.0.1:{c.router_metrics + 1}/metrics")
        samples = {line.split()[0]: float(line.split()[1]) for line in text.decode().splitlines()
                   if line.startswith("zlog_router_etcd")}
        assert samples["zlog_router_etcd_revision"] > 0 and samples["zlog_router_etcd_view_age_seconds"] < 3
        assert samples["zlog_router_etcd_watch_breaks_total"] == 0
        # zlog status: router 0 down and gone from etcd, router 1 up and registered.
        proc = subprocess.run([sys.executable, "-m", "zlog", "status", "--json"], env=c.env, cwd=c.root,
                              capture_output=True, text=True, timeout=30)
        routers = json.loads(proc.stdout)["routers"]
        assert [(r["up"], r["registered"]) for r in routers] == [(False, False), (True, True)], routers
        check_stored_once(tmp_path, coord, load.acked)


def new_term(terms: list[tuple[float, int | None, int]], after: float,
             old: int) -> tuple[float, int | None, int] | None:
    return next((t for t in terms if t[0] > after and t[1] is not None and t[1] != old), None)


def first_ack(load: Load, after: float) -> float | None:
    return next(iter(load.acks_after(0, after)), None)


@pytest.mark.cluster
def test_writes_follow_a_new_leader_within_one_watch_event(tmp_path: Path) -> None:
    with replicated_cluster(tmp_path, routers=1) as (etcd, coord, c):
        terms: list[tuple[float, int | None, int]] = []  # (when seen, leader, epoch) of partition 0

        def seen(v: View) -> None:
            s = v.partitions.get("0")
            term = (v.leader(0), -1 if s is None else s.epoch)
            if not terms or terms[-1][1:] != term:
                terms.append((time.monotonic(), *term))

        watch = Discovery((etcd.endpoint,), "/zlog", seen)
        watch.start()
        reroutes: list[float] = []
        try:
            with Load(c, etcd, threads=2, partitions=(0,)) as load:
                time.sleep(1.0)
                for _ in range(3):
                    leader = coord.snapshot().partitions["0"][0].leader
                    assert leader is not None
                    killed = time.monotonic()
                    c.kill(f"storage-{leader}")
                    # etcd names another leader once the lease is gone (our watch sees it) ...
                    new = wait_until(partial(new_term, terms, killed, leader), timeout=LEASE_MS / 1000 + 5,
                                     what="a new leader in etcd")
                    # ... and the producers' writes are acknowledged by it right after.
                    first = wait_until(partial(first_ack, load, new[0]), timeout=5,
                                       what="a write acknowledged by the new leader")
                    reroutes.append(first - new[0])
                    c.start(f"storage-{leader}", wait=False)
                    wait_until(lambda: settled(coord, 1), timeout=30, what="the killed worker back in the ISR")
                    time.sleep(1.0)
        finally:
            watch.stop()
        print(f"re-route after a leader change (s, from etcd's new leader to the first ack): "
              f"{[round(r, 3) for r in reroutes]} p50 {statistics.median(reroutes):.3f} "
              f"max {max(reroutes):.3f}; errors {dict(load.errors)}")
        assert max(reroutes) < 1.0
        assert not load.errors, f"sends failed for good: {dict(load.errors)}"
        check_stored_once(tmp_path, coord, load.acked)


@pytest.mark.cluster
def test_a_router_only_etcd_knows_of_gets_workers_and_producers(tmp_path: Path) -> None:
    with replicated_cluster(tmp_path, routers=1) as (etcd, coord, c):
        # Router 1 runs with a configuration of its own: no worker nor gateway was told of it.
        front, back, metrics = free_ports(1), free_ports(1), free_ports(1)
        text = c.config_path.read_text()
        text = text.replace(f'front = ["tcp://127.0.0.1:{c.front}"]',
                            f'front = ["tcp://127.0.0.1:{c.front}", "tcp://127.0.0.1:{front}"]')
        text = text.replace(f'back = ["tcp://127.0.0.1:{c.back}"]',
                            f'back = ["tcp://127.0.0.1:{c.back}", "tcp://127.0.0.1:{back}"]')
        text = text.replace(f"metrics_port = {c.router_metrics}", f"metrics_port = {metrics - 1}")
        (tmp_path / "router-1.toml").write_text(text)
        env = dict(c.env, ZLOG_CONFIG=str(tmp_path / "router-1.toml"))
        with open(tmp_path / "router-1.stderr", "ab") as log:
            extra = subprocess.Popen([sys.executable, "-m", "zlog", "router", "--index", "1"], env=env,
                                     cwd=tmp_path, stdout=log, stderr=log)
        try:
            wait_until(lambda: settled(coord, 2), timeout=10, what="router 1 registered")
            # The workers connect to it from etcd: a producer that knows only router 1 is served.
            with Producer([f"tcp://127.0.0.1:{front}"], delivery_timeout_s=10.0) as only_new:
                placed = only_new.send([{"service": service_for(p, PARTITIONS), "message": "via 1"}
                                        for p in range(PARTITIONS)]).result(15)
            assert sorted(p for p, _ in placed) == list(range(PARTITIONS))
            c.kill("router")
            # A producer named only the dead router 0 starts through router 1, learned from etcd;
            # the gateway (configured with router 0 only) writes through it too.
            with Producer([f"tcp://127.0.0.1:{c.front}"], delivery_timeout_s=10.0,
                          etcd=(etcd.endpoint,)) as prod:
                assert len(prod.send([{"service": "svc", "message": "m"}]).result(15)) == 1
            status, body = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(
                c.post([{"service": "gw", "message": "after router 0"}])), timeout=10, what="a gateway write")
            assert status == 200, body
        finally:
            extra.kill()
            extra.wait(10)
