"""The ``zlog status`` report as text: tables of routers, workers, partitions, tenants (pure).

Invariants:
- ``render`` shows exactly what ``report.build_report`` holds, adding nothing it does not know;
  a missing value is shown as ``-``, never guessed.
- Pure: no I/O; times are formatted from the report's own values (UTC), not the clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "up" if v else "DOWN"
    if isinstance(v, list | tuple):
        return ",".join(str(x) for x in v) or "-"
    return str(v)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _ratio(p: dict[str, Any]) -> str:
    """Plain JSONL bytes per stored byte (sealed segments compress)."""
    raw, stored = p.get("bytes"), p.get("stored_bytes")
    return f"{raw / stored:.1f}x" if raw and stored else "-"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}TiB"


def _table(title: str, header: list[str], rows: Iterable[list[str]]) -> list[str]:
    body = [header, *rows]
    widths = [max(len(r[i]) for r in body) for i in range(len(header))]
    lines = [title]
    for r in body:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return lines


def render(report: dict[str, Any]) -> str:
    lines = [f"zlog status  node {report['node_id']}  {report['partition_count']} partitions  "
             + ("OK" if report["ok"] else f"{len(report['problems'])} PROBLEM(S)")]
    lines += [f"  ! {p}" for p in report["problems"]]
    lines.append("")
    lines += _table("ROUTERS", ["#", "endpoint", "state", "etcd", "metrics", "workers", "inflight", "frames",
                                "errors", "uptime"],
                    ([_fmt(r["index"]), r["endpoint"], _fmt(r["up"]),
                      {True: "registered", False: "MISSING", None: "-"}[r["registered"]],
                      "-" if r["metrics_port"] is None else f":{r['metrics_port']}",
                      _fmt(r["workers_alive"]), _fmt(r["inflight"]), _fmt(r["frames"]), _fmt(r["errors"]),
                      _duration(r["uptime_s"])] for r in report["routers"]))
    lines.append("")
    lines += _table("WORKERS", ["id", "state", "host", "pid", "partitions", "heartbeat", "uptime", "metrics", "disk",
                                "appended"],
                    ([_fmt(w["worker"]), w["state"] if w["up"] or w["state"] == "stopped" else w["state"].upper(),
                      _fmt(w["host"]), _fmt(w["pid"]),
                      _fmt(w["partitions"] if w["up"] else w["expected_partitions"]),
                      "-" if w["last_heartbeat_ms_ago"] is None else f"{w['last_heartbeat_ms_ago']}ms ago",
                      _duration(w["uptime_s"]), f":{w['metrics_port']}", _bytes(w["disk_bytes"]),
                      _fmt(w["records_appended"])] for w in report["workers"]))
    lines.append("")
    lines += _table("PARTITIONS", ["partition", "leader", "isr/replicas", "epoch", "lowest", "highest", "hw", "bytes",
                                   "stored", "ratio", "index", "segments", "sealed", "newest"],
                    ([_fmt(p["partition"]), _fmt(p["leader"]), f"{_fmt(p['isr'])}/{_fmt(p['replicas'])}" + _moving(p),
                      _fmt(p["leader_epoch"]), _fmt(p["lowest_offset"]), _fmt(p["highest_offset"]),
                      _fmt(p["high_watermark"]), _bytes(p["bytes"]), _bytes(p.get("stored_bytes")), _ratio(p),
                      _bytes(p.get("index_bytes")), _fmt(p["segments"]), _fmt(p.get("sealed_segments")),
                      _newest(p["max_timestamp"])]
                     for p in report["partitions"]))
    rep = report.get("replication") or {}
    if rep.get("under_replicated") or rep.get("moves"):
        lines.append("")
        lines.append("REPLICATION")
        if rep.get("under_replicated"):
            lines.append(f"  under-replicated: {_fmt(rep['under_replicated'])}")
        for m in rep.get("moves", []):
            lines.append(f"  partition {m['partition']}: {_WHY.get(m['why'], m['why'])}, adding {_fmt(m['adding'])}, "
                         f"removing {_fmt(m['removing'])}")
    lines.append("")
    lines += _table("GATEWAYS", ["#", "state", "metrics", "requests", "records", "inflight", "uptime"],
                    ([_fmt(g["index"]), _fmt(g["up"]), f":{g['metrics_port']}",
                      " ".join(f"{k}:{v}" for k, v in g["requests"].items()) or "-",
                      _fmt(g["records"]), _fmt(g["inflight"]), _duration(g["uptime_s"])] for g in report["gateways"]))
    if report.get("sources"):
        lines.append("")
        lines += _table("SOURCES", ["source", "stored", "parsed", "dropped"],
                        ([s["source"], _fmt(s["stored"]), _fmt(s["parsed"]), _fmt(s["dropped"])]
                         for s in report["sources"]))
    if report.get("tenants"):
        lines.append("")
        lines += _table("TENANTS", ["tenant", "bytes", "segments", "records", "appended", "refused"],
                        ([t["tenant"] + ("" if t["declared"] else "*"), _bytes(t["bytes"]), _fmt(t["segments"]),
                          _fmt(t["records"]), _fmt(t["appended"]), _fmt(t["refused"])] for t in report["tenants"]))
    rd = report["ready"]
    verdict = rd["error"] or f"HTTP {rd['status']}"
    lines += ["", f"/ready on :{rd['url_port']}: {verdict}"]
    return "\n".join(lines)


def _newest(ts: int | None) -> str:
    if ts is None or ts < 0:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts / 1000))


_WHY = {"rereplicate": "re-replication (a replica's worker is down)", "drain": "drain", "balance": "balancing"}


def _moving(p: dict[str, Any]) -> str:
    """A reassignment under way, as ``+added -removed`` beside the replicas."""
    if not p.get("reassigning"):
        return ""
    return f" +{_fmt(p.get('adding'))} -{_fmt(p.get('removing'))}"
