"""Prometheus metrics of every zlog process, one class per role.

Invariants:
- Each process creates the metrics of its own role in its own registry, so ``/metrics`` shows
  only what that process measures; names are the documented ``zlog_*`` set (docs/operations.md).
- Metrics are updated per message or per batch, never per record, to stay off the hot path.
- Counters only go up; gauges are refreshed from the owning state when scraped or per loop turn.
- Every registry also carries the standard ``process_*`` metrics (CPU seconds, resident memory,
  start time), read from /proc only when scraped: ``zlog status`` shows uptime from them and the
  metrics cost is measured against them.
"""

from __future__ import annotations

import socket
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.exposition import ThreadingWSGIServer

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SHUTDOWN_POLL_S = 30.0  # how soon serve_forever notices a shutdown(); a scrape is served at once
_FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)


def _registry(registry: CollectorRegistry | None) -> CollectorRegistry:
    if registry is not None:
        return registry
    r = CollectorRegistry()
    ProcessCollector(registry=r)
    return r


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = _registry(registry)
        self.frames = Counter("zlog_router_frames", "Messages routed, by command", ["command"], registry=r)
        self.errors = Counter("zlog_router_errors", "Router errors, by kind", ["kind"], registry=r)
        self.inflight = Gauge("zlog_router_inflight", "Requests forwarded to workers and not yet answered", registry=r)
        self.workers_alive = Gauge("zlog_router_workers_alive", "Storage workers with a live heartbeat", registry=r)
        self.partitions_owned = Gauge(
            "zlog_router_partitions_owned", "Partitions that have a live owner", registry=r
        )
        self.tenant_refused = Counter(
            "zlog_tenant_refused", "Ingest requests refused by a tenant's limits (ADMIT)", ["tenant", "code"],
            registry=r)
        # Replicated only: the router's view of etcd (zlog.router.discovery).
        self.etcd_revision = Gauge("zlog_router_etcd_revision", "etcd revision of the router's view", registry=r)
        self.etcd_view_age = Gauge(
            "zlog_router_etcd_view_age_seconds", "Seconds since the router's watch last heard from etcd", registry=r)
        self.etcd_watch_breaks = Counter(
            "zlog_router_etcd_watch_breaks", "etcd watches that broke and were re-established", registry=r)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = _registry(registry)
        self.records = Counter("zlog_storage_records", "Records appended", ["partition"], registry=r)
        self.batches = Counter("zlog_storage_batches", "Batches appended", ["partition"], registry=r)
        self.duplicates = Counter(
            "zlog_storage_duplicate_batches", "Producer retries recognised and not stored again", registry=r
        )
        self.disk_bytes = Gauge("zlog_storage_disk_bytes", "Bytes on disk", ["partition"], registry=r)
        self.segments = Gauge("zlog_storage_segments", "Segments on disk", ["partition"], registry=r)
        self.highest_offset = Gauge(
            "zlog_storage_highest_offset", "Offset of the newest record (-1: empty)", ["partition"], registry=r
        )
        self.lowest_offset = Gauge("zlog_storage_lowest_offset", "Offset of the oldest record", ["partition"], registry=r)
        self.fsync_seconds = Histogram(
            "zlog_storage_fsync_seconds", "Time per commit (write + fsync)", buckets=_FSYNC_BUCKETS, registry=r
        )
        self.recovery_truncated = Counter(
            "zlog_recovery_truncated_bytes", "Bytes cut from segment tails during recovery", registry=r
        )
        self.errors = Counter("zlog_storage_errors", "Storage worker errors, by kind", ["kind"], registry=r)
        self.requests = Counter("zlog_storage_requests", "Requests handled, by command", ["command"], registry=r)
        # Usage per tenant (every partition of the tenant on this worker, summed).
        self.tenant_records = Counter("zlog_tenant_records", "Records appended, by tenant", ["tenant"], registry=r)
        self.tenant_bytes = Gauge("zlog_tenant_disk_bytes", "Bytes on disk, by tenant", ["tenant"], registry=r)
        self.tenant_segments = Gauge("zlog_tenant_segments", "Segments on disk, by tenant", ["tenant"], registry=r)
        self.tenant_stored = Gauge("zlog_tenant_stored_records", "Records kept (after retention), by tenant",
                                   ["tenant"], registry=r)
        self._appended: dict[tuple[int, str], tuple[Counter, Counter, Counter]] = {}

    def appended(self, partition: int, records: int, tenant: str = "") -> None:
        """One stored batch. The labelled children are looked up once per (partition, tenant):
        ``labels()`` costs more than the increments together, and this runs once per batch."""
        series = self._appended.get((partition, tenant))
        if series is None:
            label = str(partition)
            series = (self.records.labels(partition=label), self.batches.labels(partition=label),
                      self.tenant_records.labels(tenant=tenant))
            self._appended[(partition, tenant)] = series
        series[0].inc(records)
        series[1].inc()
        series[2].inc(records)

    def tenant_usage(self, tenant: str, nbytes: int, segments: int, records: int) -> None:
        self.tenant_bytes.labels(tenant=tenant).set(nbytes)
        self.tenant_segments.labels(tenant=tenant).set(segments)
        self.tenant_stored.labels(tenant=tenant).set(records)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = _registry(registry)
        self.requests = Counter("zlog_ingest_requests", "Ingest requests, by HTTP status", ["status"], registry=r)
        self.records = Counter("zlog_ingest_records", "Records acknowledged (stored durably)", registry=r)
        self.bytes = Counter("zlog_ingest_bytes", "Request body bytes received for ingest", registry=r)
        self.request_seconds = Histogram(
            "zlog_ingest_request_seconds", "Ingest request latency", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.errors = Counter("zlog_ingest_errors", "Ingest errors, by kind", ["kind"], registry=r)
        self.source_records = Counter(
            "zlog_ingest_source_records", "Records stored, by the protocol they came in by", ["source"], registry=r
        )
        self.spooled = Counter("zlog_ingest_spooled_records", "Records written to the ingest WAL", registry=r)
        self.replayed = Counter("zlog_ingest_replayed_records", "WAL records stored after an outage", registry=r)
        self.wal_pending = Gauge("zlog_ingest_wal_pending_batches", "WAL batches waiting to be stored", registry=r)
        self.wal_bytes = Gauge("zlog_ingest_wal_bytes", "Bytes in the ingest WAL", registry=r)
        self.inflight = Gauge("zlog_ingest_inflight_requests", "Ingest requests in progress", registry=r)
        self.query_requests = Counter(
            "zlog_query_requests", "Read requests, by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.query_seconds = Histogram(
            "zlog_query_request_seconds", "Read request latency", ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self._by_status: dict[int, Any] = {}
        self._by_source: dict[str, Any] = {}

    def answered(self, status: int) -> None:
        """One ingest request answered. Children looked up once per status: ``labels()`` costs
        more than the increment, and this runs once per request."""
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self.requests.labels(status=str(status))
        child.inc()

    def stored_from(self, source: str, records: int) -> None:
        child = self._by_source.get(source)
        if child is None:
            child = self._by_source[source] = self.source_records.labels(source=source)
        child.inc(records)


class SyslogMetrics:
    """Per listener (tcp, udp): messages parsed, stored and dropped, and why they were dropped."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = _registry(registry)
        self.messages = Counter("zlog_syslog_messages", "Syslog messages, by listener and outcome "
                                "(parsed, stored, dropped)", ["listener", "outcome"], registry=r)
        self.drops = Counter("zlog_syslog_dropped", "Syslog messages dropped, by listener and reason",
                             ["listener", "reason"], registry=r)
        self._msg: dict[tuple[str, str], Any] = {}
        self._drop: dict[tuple[str, str], Any] = {}
        self.stored_total = 0

    def _count(self, table: dict[tuple[str, str], Any], counter: Counter, key: tuple[str, str], n: int) -> None:
        child = table.get(key)
        if child is None:  # labels() costs more than the increment: look each series up once
            child = table[key] = counter.labels(*key)
        child.inc(n)

    def parsed(self, listener: str) -> None:
        self._count(self._msg, self.messages, (listener, "parsed"), 1)

    def stored(self, listener: str, n: int = 1) -> None:
        self.stored_total += n
        self._count(self._msg, self.messages, (listener, "stored"), n)

    def dropped(self, listener: str, reason: str, n: int = 1) -> None:
        self._count(self._msg, self.messages, (listener, "dropped"), n)
        self._count(self._drop, self.drops, (listener, reason), n)


def serve(port: int, registry: CollectorRegistry, host: str = "127.0.0.1") -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` for ``registry`` from a daemon thread that sleeps until a scrape arrives.

    prometheus-client's ``start_http_server`` runs ``serve_forever`` with its default half-second
    poll, which wakes the thread twice a second to look for a shutdown nobody asks for (four
    processes, eight wake-ups a second of an idle cluster); this is the same server with a poll of
    ``SHUTDOWN_POLL_S``. Also turns off prometheus-client's ``*_created`` series for the whole
    process (a process that serves metrics calls this once, at start): they would double every
    counter's series in Prometheus and say nothing ``process_start_time_seconds`` does not."""
    disable_created_metrics()
    family, addr = _best_family(host, port)

    class Server(ThreadingWSGIServer):
        address_family = family

    server = make_server(addr, port, make_wsgi_app(registry), Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S},
                              name="metrics", daemon=True)
    thread.start()
    return server, thread


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A scrape is not worth a line on stderr."""


def _best_family(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    return family, str(sockaddr[0])
