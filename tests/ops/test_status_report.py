"""The status report of a replicated cluster (pure): every registered worker with its host, the
under-replicated partitions and the moves under way with their cause."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from zlog.config import Config
from zlog.ops.report import Raw, build_report
from zlog.ops.report_text import render


def _cfg() -> Config:
    cfg = Config()
    return replace(cfg, cluster=replace(cfg.cluster, workers=4, partitions=4),
                   storage=replace(cfg.storage, replication_factor=3))


def _worker(w: int, led: list[int]) -> dict[str, Any]:
    return {"worker": w, "partitions": led, "node": "node-a", "host": f"10.0.0.{w}", "pid": 100 + w,
            "metrics_port": 9110 + w, "last_seen_ms_ago": 5, "uptime_ms": 1000, "inflight": 0}


def _stats(leader: int, replicas: list[int], isr: list[int], adding: tuple[int, ...] = (),
           removing: tuple[int, ...] = (), draining: tuple[int, ...] = ()) -> dict[str, Any]:
    return {"lowest_offset": 0, "next_offset": 10, "bytes": 100, "segments": 1, "max_timestamp": 1,
            "leader": leader, "replicas": replicas, "isr": isr, "leader_epoch": 3, "high_watermark": 10,
            "reassigning": bool(adding or removing), "adding": list(adding), "removing": list(removing),
            "draining": list(draining)}


def test_every_registered_worker_with_its_host_and_the_moves_with_their_cause() -> None:
    # Worker 2 is dead: partition 0 re-replicates its replica onto 4 (a worker that joined beyond
    # cluster.workers), partition 1 still lists it (not lost yet), partition 2 drains worker 1,
    # partition 3 balances; worker 5 joined, was drained and stopped: it holds nothing.
    metadata = {"partitions": 4, "owners": [0, 1, 3, 3],
                "workers": [_worker(0, [0]), _worker(1, [1]), _worker(3, [2, 3]), _worker(4, [])]}
    stats: dict[int, dict[str, Any] | str] = {
        0: _stats(0, [0, 2, 3, 4], [0, 3], adding=(4,), removing=(2,)),
        1: _stats(1, [1, 2, 3], [1, 3]),
        2: _stats(3, [3, 1, 0, 4], [0, 1, 3], adding=(4,), removing=(1,), draining=(1,)),
        3: _stats(3, [3, 0, 1, 4], [0, 1, 3, 4], adding=(4,), removing=(1,)),
    }
    raw = Raw(now=0.0, metadata=[metadata], router_metrics=[{}], stats=stats,
              worker_metrics={0: {}, 1: {}, 2: "connection refused", 3: {}, 4: {}}, gateway_metrics=[{}],
              health={"status": 200, "body": {}})
    report = build_report(_cfg(), raw)
    rows = {w["id"]: w for w in report["workers"]}
    assert sorted(rows) == [0, 1, 2, 3, 4]  # 4 joined beyond cluster.workers; 5 holds nothing and is gone
    assert [rows[w]["host"] for w in (0, 1, 3, 4)] == ["10.0.0.0", "10.0.0.1", "10.0.0.3", "10.0.0.4"]
    assert rows[2]["state"] == "down" and rows[2]["expected_partitions"] == [0, 1]
    assert rows[4]["expected_partitions"] == [0, 2, 3] and rows[4]["metrics_port"] == _cfg().worker_metrics_port(4)
    assert report["replication"] == {
        "under_replicated": [0, 1],
        "moves": [{"partition": 0, "adding": [4], "removing": [2], "why": "rereplicate"},
                  {"partition": 2, "adding": [4], "removing": [1], "why": "drain"},
                  {"partition": 3, "adding": [4], "removing": [1], "why": "balance"}]}
    assert any(p.startswith("worker 2 is down") for p in report["problems"])
    assert "partition 1 is under-replicated: isr [1, 3] of [1, 2, 3]" in report["problems"]
    text = render(report)
    assert "REPLICATION" in text and "under-replicated: 0,1" in text
    assert "partition 0: re-replication (a replica's worker is down), adding 4, removing 2" in text
    assert "10.0.0.4" in text


def test_a_stopped_worker_that_holds_no_replica_is_not_a_problem() -> None:
    metadata = {"partitions": 4, "owners": [0, 1, 3, 0],
                "workers": [_worker(0, [0, 3]), _worker(1, [1]), _worker(3, [2])]}
    stats: dict[int, dict[str, Any] | str] = {p: _stats(p % 2, [0, 1, 3], [0, 1, 3]) for p in range(4)}
    raw = Raw(now=0.0, metadata=[metadata], router_metrics=[{}], stats=stats,
              worker_metrics={0: {}, 1: {}, 2: "connection refused", 3: {}}, gateway_metrics=[{}],
              health={"status": 200, "body": {}})
    report = build_report(_cfg(), raw)
    assert report["ok"] is True, report["problems"]
    assert {w["id"]: w["state"] for w in report["workers"]} == {0: "up", 1: "up", 2: "stopped", 3: "up"}
    assert report["replication"] == {"under_replicated": [], "moves": []}
    # ... unless nobody can say who holds what
    raw.stats = {p: "no router answered" for p in range(4)}
    assert {w["id"]: w["state"] for w in build_report(_cfg(), raw)["workers"]}[2] == "down"
