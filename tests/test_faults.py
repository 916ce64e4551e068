"""Fault injection on real processes under concurrent load: nothing acknowledged is lost or doubled.

Each test runs a real cluster (``tests._cluster.Cluster``), HTTP load threads (plain requests and
Idempotency-Key retries) and, where a router is reachable, a zmq-native ``Producer``, injects one
kind of fault for ~12 s, restores the cluster and checks with ``tools.chaos.verify``:

- every acknowledged record (200; 202 once its spooled share is replayed; a native send that
  resolved) is stored exactly once, and the offsets the acknowledgement named hold it;
- per load thread and partition, directly stored acknowledged records keep acknowledgement order;
- every stored line is a valid 8-field record and no request is stored in part per partition;
- the fault was felt (some answers were not 200) and no answer took longer than the deadline
  plus slack (nothing hangs), and no process died that the test did not kill.
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests._cluster import Cluster, wait_until
from tools.chaos import HttpLoad, NativeLoad, settle, verify

TIMEOUT_MS = 1500
FAULT_S = 12.0


def cluster_for(tmp_path: Path, gateways: int = 1) -> Cluster:
    c = Cluster(tmp_path, gateways=gateways, heartbeat_ms=200)
    c.env_extra["ZLOG_GATEWAY_REQUEST_TIMEOUT_MS"] = str(TIMEOUT_MS)
    c.env_extra["ZLOG_LOG_LEVEL"] = "warning"
    return c


def loads_for(c: Cluster, native: bool = True) -> list[HttpLoad | NativeLoad]:
    loads: list[HttpLoad | NativeLoad] = [HttpLoad("127.0.0.1", c.http_port, c.partitions, threads=4, keyed=2,
                                                   records=10, client_timeout_s=10, retry_for_s=8)]
    if native:
        loads.append(NativeLoad([f"tcp://127.0.0.1:{c.front}"], c.partitions, records=5, timeout_s=2.0))
    return loads


def under_load(c: Cluster, fault: Callable[[random.Random], None], *, native: bool = True,
               period_s: float = 2.0) -> list[HttpLoad | NativeLoad]:
    """Run the load, apply ``fault`` every ``period_s`` for FAULT_S, restore, return the loads."""
    loads = loads_for(c, native)
    for load in loads:
        load.start()
    rng = random.Random(7)
    try:
        time.sleep(1.0)  # some traffic before the first fault
        end = time.monotonic() + FAULT_S
        while time.monotonic() < end:
            fault(rng)
            time.sleep(period_s)
    finally:
        for load in loads:
            load.stop()
    c.start()  # everything up again, every worker registered
    return loads


def check(c: Cluster, loads: list[HttpLoad | NativeLoad], *, max_latency_s: float) -> None:
    verdict = settle(c.data_dir, c.partitions, loads, timeout_s=20)
    http_load = loads[0]
    assert isinstance(http_load, HttpLoad)
    print(f"\nHTTP answers {dict(http_load.stats.statuses)} error codes {dict(http_load.bodies)} "
          f"max latency {http_load.stats.max_latency_s:.2f}s")
    for load in loads[1:]:
        print(f"native sends {dict(load.stats.statuses)} max latency {load.stats.max_latency_s:.2f}s")
    print(verdict.summary())
    assert verdict.ok, verdict.summary()
    assert verdict.audit.acknowledged >= 200, "the load did not run"
    statuses = http_load.stats.statuses
    assert sum(n for s, n in statuses.items() if s != "200") > 0, f"the fault was never felt: {statuses}"
    assert http_load.stats.retry_after_missing == 0
    assert http_load.stats.max_latency_s < max_latency_s, "an answer took longer than the deadline allows"
    assert not any(s.startswith("5") and s not in ("503", "504", "507") for s in statuses), statuses
    for load in loads[1:]:
        assert load.stats.statuses["ok"] > 0, "the native producer never got through"
        assert load.stats.max_latency_s < max_latency_s


def assert_alive(c: Cluster, *names: str) -> None:
    for n in names:
        assert c.procs[n].alive(), f"{n} died by itself:\n{c.logs(n)}"


def test_a_sigkill_storage_workers_every_2s(tmp_path: Path) -> None:
    c = cluster_for(tmp_path)
    with c:
        def fault(rng: random.Random) -> None:
            name = rng.choice(["storage-0", "storage-1"])
            c.kill(name)
            time.sleep(rng.uniform(0.1, 0.8))  # sometimes past the 3-heartbeat liveness window
            c.start(name, wait=False)
            assert_alive(c, "router", "gateway-0")

        loads = under_load(c, fault)
        check(c, loads, max_latency_s=TIMEOUT_MS / 1000 + 3)


def test_b_sigkill_the_router_every_2s(tmp_path: Path) -> None:
    c = cluster_for(tmp_path)
    with c:
        def fault(rng: random.Random) -> None:
            c.kill("router")
            time.sleep(rng.uniform(0.1, 0.8))
            c.start("router", wait=False)
            assert_alive(c, "storage-0", "storage-1", "gateway-0")

        loads = under_load(c, fault)
        check(c, loads, max_latency_s=TIMEOUT_MS / 1000 + 3)


def test_c_sigkill_a_gateway_every_2s(tmp_path: Path) -> None:
    c = cluster_for(tmp_path, gateways=2)
    with c:
        def fault(rng: random.Random) -> None:
            name = rng.choice(["gateway-0", "gateway-1"])
            # A worker is down at the same time now and then, so a gateway dies with WAL pending.
            worker = "storage-1" if rng.random() < 0.5 else None
            if worker:
                c.kill(worker)
                time.sleep(0.8)
            c.kill(name)
            time.sleep(rng.uniform(0.1, 0.5))
            c.start(name, wait=False)
            if worker:
                c.start(worker, wait=False)
            assert_alive(c, "router", "storage-0")

        loads = under_load(c, fault, native=False)
        # Requests a killed gateway held die with the connection; the load generator reconnects.
        check(c, loads, max_latency_s=TIMEOUT_MS / 1000 + 3)


def test_d_sigstop_a_worker_past_the_deadline(tmp_path: Path) -> None:
    c = cluster_for(tmp_path)
    with c:
        def fault(rng: random.Random) -> None:
            name = rng.choice(["storage-0", "storage-1"])
            c.signal(name, signal.SIGSTOP)
            try:
                time.sleep(TIMEOUT_MS / 1000 + rng.uniform(0.2, 1.0))  # longer than the deadline
            finally:
                c.signal(name, signal.SIGCONT)
            assert_alive(c, "router", "gateway-0", "storage-0", "storage-1")

        loads = under_load(c, fault, period_s=1.0)
        check(c, loads, max_latency_s=TIMEOUT_MS / 1000 + 3)
        assert_alive(c, "storage-0", "storage-1")


# -- disk full --------------------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Callable[[str], None]]:
    """``path`` becomes a tmpfs of ``size``; yields a function that resizes it in place."""
    path.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if out.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here ({out.stderr.decode().strip()}); this test needs root")

    def resize(new: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={new}", str(path)], check=True)

    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_e_disk_full_is_507_nothing_partial_and_service_resumes(tmp_path: Path) -> None:
    c = cluster_for(tmp_path)
    c.env_extra["ZLOG_GATEWAY_WAL"] = "false"  # the caller must see the disk error itself
    # Partition 3 (auth_service, worker 1) lives on a 256 KiB tmpfs; partition 0 on the normal disk.
    with small_tmpfs(c.data_dir / "3", "256k") as resize, c:
        load = HttpLoad("127.0.0.1", c.http_port, c.partitions, threads=3, keyed=1, records=8, pad=1500,
                        services=("auth_service", "event_creator"), client_timeout_s=10, retry_for_s=2)
        load.start()
        try:
            wait_until(lambda: load.bodies["DISK_FULL"] >= 3, timeout=30, what="507 DISK_FULL answers")
            resize("64m")  # space is back
            t_back = time.monotonic()
            # Service resumes by itself: no restart, the worker that failed is the one that serves.
            wait_until(lambda: c.post([{"service": "auth_service", "message": "after the disk filled up"}])[0] == 200,
                       timeout=10, what="partition 3 to accept writes again")
            print(f"\nresumed {time.monotonic() - t_back:.2f}s after space came back")
            acked_before = sum(1 for u in load.all_units() if u.acked)
            time.sleep(2.0)
        finally:
            load.stop()
        assert sum(1 for u in load.all_units() if u.acked) > acked_before, "the load did not resume"
        assert_alive(c, "storage-0", "storage-1", "router", "gateway-0")
        assert load.stats.statuses["507"] >= 3 and load.bodies["DISK_FULL"] >= 3
        # 507 for the full disk; a request queued behind one that failed may get a retryable 503.
        assert set(load.bodies) <= {"DISK_FULL", "OUT_OF_ORDER_SEQUENCE", "BACKPRESSURE"}, load.bodies
        assert not any(s.startswith("5") and s not in ("503", "507") for s in load.stats.statuses), load.stats.statuses
        v = verify(c.data_dir, c.partitions, [load])
        print(f"HTTP answers {dict(load.stats.statuses)} error codes {dict(load.bodies)}; {v.summary()}")
        assert v.ok, v.summary()
        # Nothing corrupt: a restart of the worker recovers without cutting anything, same records.
        before = list(c.stored_lines(3))
        c.kill("storage-1")
        c.start("storage-1")
        assert list(c.stored_lines(3)) == before
