"""The ``zlog status`` report (pure): what ``gather`` learned, shaped into one report
(``report_text.render`` turns it into text; ``--json`` prints the report itself).

Invariants:
- No I/O and no clock: ``Raw`` carries "now" and every answer (or the error string in its place).
- A process that did not answer is ``down`` with its reason, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zlog.config import Config
from zlog.replication.summary import summarize

# Metric samples kept from each scrape: name -> {label value tuple: value}.
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


@dataclass
class Raw:
    """Everything ``gather`` learned, as it came: the input of the pure ``build_report``."""

    now: float
    metadata: list[dict[str, Any] | str] = field(default_factory=list)  # per router: body or error
    router_metrics: list[Samples | str] = field(default_factory=list)
    stats: dict[int, dict[str, Any] | str] = field(default_factory=dict)  # per partition
    worker_metrics: dict[int, Samples | str] = field(default_factory=dict)  # per worker id
    gateway_metrics: list[Samples | str] = field(default_factory=list)
    syslog_metrics: Samples | str = "not asked"  # the syslog listener's, when one is configured
    health: dict[str, Any] | str = "not asked"


def _value(samples: Samples | str, name: str, **labels: str) -> float | None:
    """The sum of the matching series; 0 for a scraped process without any (a labelled counter
    has no series before its first event), None when the process was not scraped."""
    if isinstance(samples, str):
        return None
    want = set(labels.items())
    return sum(v for key, v in samples.get(name, {}).items() if want <= set(key))


def _by_label(samples: Samples | str, name: str, label: str) -> dict[str, float]:
    if isinstance(samples, str):
        return {}
    out: dict[str, float] = {}
    for key, v in samples.get(name, {}).items():
        d = dict(key)
        if label in d:
            out[d[label]] = out.get(d[label], 0.0) + v
    return out


def _int(x: float | None) -> int | None:
    return None if x is None else int(x)


def _uptime(samples: Samples | str, now: float) -> float | None:
    if isinstance(samples, str) or not samples.get("process_start_time_seconds"):
        return None
    start = max(samples["process_start_time_seconds"].values())
    return round(max(0.0, now - start), 1)


def build_report(cfg: Config, raw: Raw) -> dict[str, Any]:
    problems: list[str] = []
    routers = []
    # Replicated: the routers registered in etcd, as any router that answered sees them.
    registered: dict[int, dict[str, Any]] = {}
    for m in raw.metadata:
        if isinstance(m, dict) and isinstance(m.get("routers"), list):
            registered = {int(r["id"]): r for r in m["routers"] if isinstance(r, dict) and "id" in r}
            break
    replicated = cfg.storage.replication_factor > 1
    for i, ep in enumerate(cfg.router.front):
        meta = raw.metadata[i] if i < len(raw.metadata) else "not asked"
        rm = raw.router_metrics[i] if i < len(raw.router_metrics) else "not asked"
        up = isinstance(meta, dict)
        if not up:
            problems.append(f"router {i} ({ep}) does not answer: {meta}")
        routers.append({
            "index": i, "endpoint": ep, "up": up, "error": None if up else meta,
            "metrics_port": cfg.router.metrics_port + i, "metrics_error": rm if isinstance(rm, str) else None,
            "workers_alive": len(meta.get("workers", [])) if isinstance(meta, dict) else None,
            "inflight": _int(_value(rm, "zlog_router_inflight")),
            "frames": _int(_value(rm, "zlog_router_frames_total")),
            "errors": _int(_value(rm, "zlog_router_errors_total")),
            "uptime_s": _uptime(rm, raw.now),
            "registered": (i in registered) if replicated else None,
            "pid": registered[i]["pid"] if i in registered else None,
        })
        if replicated and up and registered and i not in registered:
            problems.append(f"router {i} ({ep}) answers but is not registered in etcd")
    for rid, r in sorted(registered.items()):  # started elsewhere, not in router.front
        if rid >= len(cfg.router.front):
            routers.append({"index": rid, "endpoint": r.get("front"), "up": None, "error": None,
                            "metrics_port": None, "metrics_error": None, "workers_alive": None, "inflight": None,
                            "frames": None, "errors": None, "uptime_s": None, "registered": True,
                            "pid": r.get("pid")})

    # A worker is live when any router lists it; the freshest router view wins.
    seen: dict[int, dict[str, Any]] = {}
    owners: list[int | None] = [None] * cfg.cluster.partitions
    for meta in raw.metadata:
        if not isinstance(meta, dict):
            continue
        for w in meta.get("workers", []):
            wid = int(w["worker"])
            if wid not in seen or w.get("last_seen_ms_ago", 0) < seen[wid].get("last_seen_ms_ago", 0):
                seen[wid] = w
        for p, o in enumerate(meta.get("owners", [])):
            if p < len(owners) and o is not None and owners[p] is None:
                owners[p] = int(o)

    any_router = any(isinstance(m, dict) for m in raw.metadata)
    if not any_router:
        problems.append("no router answered: partition owners are unknown")
    partitions = _partitions(cfg, raw, owners, any_router, problems)
    workers = _workers(cfg, raw, seen, partitions, problems)
    replication = summarize(partitions, {w["id"] for w in workers if w["up"]})
    problems += [f"partition {e['partition']} is under-replicated: isr {e['isr']} of {e['replicas']}"
                 for e in partitions if e["under_replicated"]]

    gateways = []
    for i in range(cfg.gateway.processes):
        gm = raw.gateway_metrics[i] if i < len(raw.gateway_metrics) else "not asked"
        up = isinstance(gm, dict)
        if not up:
            problems.append(f"gateway {i} metrics port {cfg.gateway.metrics_port_base + i} does not answer: {gm}")
        gateways.append({
            "index": i, "up": up, "metrics_port": cfg.gateway.metrics_port_base + i,
            "error": None if up else gm,
            "requests": {k: int(v) for k, v in sorted(_by_label(gm, "zlog_ingest_requests_total", "status").items())},
            "records": _int(_value(gm, "zlog_ingest_records_total")),
            "inflight": _int(_value(gm, "zlog_ingest_inflight_requests")),
            "uptime_s": _uptime(gm, raw.now),
        })
    sources = _sources(cfg, raw, problems)
    health = raw.health
    ready = {"url_port": cfg.gateway.port,
             "status": health.get("status") if isinstance(health, dict) else None,
             "body": health.get("body") if isinstance(health, dict) else None,
             "error": health if isinstance(health, str) else None}
    return {"ok": not problems, "problems": problems, "node_id": cfg.cluster.node_id,
            "partition_count": cfg.cluster.partitions, "routers": routers, "workers": workers,
            "partitions": partitions, "replication": replication, "gateways": gateways, "sources": sources,
            "ready": ready,
            "tenants": _tenants(cfg, raw)}


def _partitions(cfg: Config, raw: Raw, owners: list[int | None], any_router: bool,
                problems: list[str]) -> list[dict[str, Any]]:
    partitions = []
    for p in range(cfg.cluster.partitions):
        st = raw.stats.get(p, "not asked")
        wm = raw.worker_metrics.get(cfg.owner_of(p), "not asked")
        o = owners[p]
        # Unreplicated (R = 1) the owner is the leader and the only replica; a replicated leader says.
        entry: dict[str, Any] = {"partition": p, "owner": o, "error": None, "leader": o,
                                 "replicas": [] if o is None else [o], "isr": [] if o is None else [o],
                                 "leader_epoch": None, "high_watermark": None}
        if isinstance(st, dict):
            entry.update(lowest_offset=st.get("lowest_offset"), highest_offset=int(st["next_offset"]) - 1,
                         bytes=st.get("bytes"), segments=st.get("segments"), max_timestamp=st.get("max_timestamp"),
                         source="stats", leader_epoch=0, high_watermark=st.get("next_offset"),
                         stored_bytes=st.get("stored_bytes"), index_bytes=st.get("index_bytes"),
                         sealed_segments=st.get("sealed_segments"))
            entry.update({k: st[k] for k in ("leader", "replicas", "isr", "leader_epoch", "high_watermark",
                                             "reassigning", "adding", "removing", "draining") if k in st})
        else:
            # The owner's last published gauges are better than nothing (they lag a heartbeat).
            entry.update(lowest_offset=_int(_value(wm, "zlog_storage_lowest_offset", partition=str(p))),
                         highest_offset=_int(_value(wm, "zlog_storage_highest_offset", partition=str(p))),
                         bytes=_int(_value(wm, "zlog_storage_disk_bytes", partition=str(p))),
                         segments=_int(_value(wm, "zlog_storage_segments", partition=str(p))),
                         max_timestamp=None, source="metrics" if isinstance(wm, dict) else None, error=st)
        if owners[p] is None and any_router:
            problems.append(f"partition {p} has no live owner")
        partitions.append(entry)
    return partitions


def _workers(cfg: Config, raw: Raw, seen: dict[int, dict[str, Any]], partitions: list[dict[str, Any]],
             problems: list[str]) -> list[dict[str, Any]]:
    """Every configured worker, every worker a router lists (one that joined beyond
    ``cluster.workers`` too) and every worker a partition names among its replicas. Replicated,
    a stopped worker that holds no replica (drained, or its replicas moved after it was lost)
    is ``stopped``, not a problem."""
    replicated = cfg.storage.replication_factor > 1
    held: dict[int, list[int]] = {}  # worker -> partitions etcd lists it a replica of (through the leaders)
    for e in partitions:
        for r in e["replicas"] if replicated else ():
            held.setdefault(int(r), []).append(e["partition"])
    known = any(e.get("source") == "stats" for e in partitions)  # else who holds what is unknown
    workers = []
    for wid in sorted(set(range(cfg.cluster.workers)) | set(seen) | set(held)):
        w = seen.get(wid)
        wm = raw.worker_metrics.get(wid, "not asked")
        if replicated:
            expected = sorted(held.get(wid, []))
        else:
            expected = list(cfg.partitions_of(wid)) if wid < cfg.cluster.workers else []
        # "unregistered": the process answers on its metrics port but no router lists it.
        state = "up" if w is not None else "down" if isinstance(wm, str) else "unregistered"
        if state == "down" and replicated and known and not expected:
            state = "stopped"
        if state == "down":
            problems.append(f"worker {wid} is down: no router lists it and its metrics port says {wm}")
        elif state == "unregistered":
            problems.append(f"worker {wid} runs (metrics port answers) but no router lists it")
        workers.append({
            "worker": wid, "id": wid, "up": w is not None, "state": state,
            "pid": w.get("pid") if w else None, "host": (w.get("host") or None) if w else None,
            "node": w.get("node") if w else None,
            "partitions": list(w.get("partitions", [])) if w else [],
            "expected_partitions": expected,
            "last_heartbeat_ms_ago": w.get("last_seen_ms_ago") if w else None,
            "registered_ms": w.get("uptime_ms") if w else None,
            "uptime_s": _uptime(wm, raw.now),
            "inflight": w.get("inflight") if w else None,
            "metrics_port": cfg.worker_metrics_port(wid), "metrics_error": wm if isinstance(wm, str) else None,
            "disk_bytes": _int(_value(wm, "zlog_storage_disk_bytes")),
            "records_appended": _int(_value(wm, "zlog_storage_records_total")),
        })
    return workers


def _tenants(cfg: Config, raw: Raw) -> list[dict[str, Any]]:
    """Usage per tenant, summed over the workers that answered (docs/tenants.md); declared
    tenants are listed even before their first record."""
    usage: dict[str, dict[str, float]] = {name: {} for name in cfg.tenants.names()}
    for metric, key in (("zlog_tenant_disk_bytes", "bytes"), ("zlog_tenant_segments", "segments"),
                        ("zlog_tenant_stored_records", "records"), ("zlog_tenant_records_total", "appended")):
        for wm in raw.worker_metrics.values():
            for tenant, v in _by_label(wm, metric, "tenant").items():
                u = usage.setdefault(tenant, {})
                u[key] = u.get(key, 0.0) + v
    refused: dict[str, float] = {}
    for rm in raw.router_metrics:
        for tenant, v in _by_label(rm, "zlog_tenant_refused_total", "tenant").items():
            refused[tenant] = refused.get(tenant, 0.0) + v
    return [{"tenant": t, "declared": t in cfg.tenants.names(), "bytes": int(u.get("bytes", 0)),
             "segments": int(u.get("segments", 0)), "records": int(u.get("records", 0)),
             "appended": int(u.get("appended", 0)), "refused": int(refused.get(t, 0))}
            for t, u in sorted(usage.items())]


def _sources(cfg: Config, raw: Raw, problems: list[str]) -> list[dict[str, Any]]:
    """Records stored per intake protocol (summed over gateways), and the syslog listeners'
    parsed / stored / dropped counts, which syslog itself cannot report."""
    totals: dict[str, float] = {}
    for gm in raw.gateway_metrics:
        for src, v in _by_label(gm, "zlog_ingest_source_records_total", "source").items():
            totals[src] = totals.get(src, 0.0) + v
    out: list[dict[str, Any]] = [{"source": src, "stored": int(v), "parsed": None, "dropped": None}
                                 for src, v in sorted(totals.items())]
    sm = raw.syslog_metrics
    listeners = [name for name, addr in (("tcp", cfg.syslog.tcp), ("udp", cfg.syslog.udp)) if addr]
    if listeners and isinstance(sm, str):
        problems.append(f"syslog listener metrics port {cfg.syslog.metrics_port} does not answer: {sm}")
    for name in listeners:
        def count(outcome: str, listener: str = name) -> int | None:
            return _int(_value(sm, "zlog_syslog_messages_total", listener=listener, outcome=outcome))

        out.append({"source": f"syslog/{name}", "stored": count("stored"), "parsed": count("parsed"),
                    "dropped": count("dropped")})
    return out


# -- rendering (pure) -------------------------------------------------------------------------
