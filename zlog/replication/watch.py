"""The I/O shell of discovery: a thread that keeps a ``View`` of etcd current through a watch, and
one that keeps a key alive under a lease (a router's ``routers/<id>``).

The watch is a long poll over etcd's JSON gateway: ``POST /v3/watch`` answers with a stream of
newline-separated JSON messages, read here line by line with a bounded line length and a read
timeout. (etcd3gw's own ``watch`` runs its reader in a pool thread that swallows errors and has
no read timeout, so a broken stream would go unnoticed; the stream is read here directly.)

Invariants:
- A watch always starts from a fresh read: ``snapshot`` gives the view and its revision, the
  watch asks for every event after that revision, so no change between the two is missed.
- The watch asks for progress notifications; with ``zlog etcd``'s 1 s interval a healthy
  stream is never silent for ``quiet_s``. A silent stream (a cut-off member, or an etcd
  without that setting on a quiet cluster) is dropped after ``quiet_s`` and re-established
  from a fresh read; so is one that ends, is cancelled (compaction) or sends a line longer
  than ``MAX_LINE``. Errors back off from 0.1 s to 2 s and are logged once per outage.
- While etcd cannot be reached the last view stays published: callers keep routing by what
  they last knew, and refuse what it cannot place (a partition without a live leader).
- ``on_change`` runs on the watch thread, once per new view; an exception in it is logged and
  the thread goes on. It must only hand the view over (to a socket, a loop), never block.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Callable

import orjson

from zlog.replication.coordination import CoordinationError, Coordinator, b64, prefix_end
from zlog.replication.discovery import View, apply

log = logging.getLogger("zlog.discovery")

MAX_LINE = 8 * 1024 * 1024  # one watch response; etcd's own request limit is 1.5 MiB per value
QUIET_S = 3.0
RETRY_MIN_S, RETRY_MAX_S = 0.1, 2.0


class WatchBroken(RuntimeError):
    """The watch stream ended, was cancelled, or sent something unreadable."""


class Discovery(threading.Thread):
    def __init__(self, endpoints: tuple[str, ...], prefix: str, on_change: Callable[[View], None], *,
                 timeout_s: float = 2.0, quiet_s: float = QUIET_S, name: str = "zlog-discovery") -> None:
        super().__init__(name=name, daemon=True)
        self.coord = Coordinator(endpoints, prefix, timeout_s)
        self.prefix = self.coord.prefix
        self.on_change = on_change
        self.timeout_s = timeout_s
        self.quiet_s = quiet_s
        self.view: View | None = None
        self.heard = 0.0  # monotonic time of the last answer from etcd (a read, an event, a progress notice)
        self.reads = 0  # fresh reads (each starts a watch)
        self.breaks = 0  # watches that failed (not the routine quiet ones)
        self._halt = threading.Event()
        self._failing = False
        self._endpoint = 0
        self._conn: http.client.HTTPConnection | None = None

    def stop(self) -> None:
        """Stop watching; the thread leaves at its next read (at most ``quiet_s``)."""
        self._halt.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(2)  # wakes the blocked read at once
            except OSError:
                pass

    def run(self) -> None:
        backoff = RETRY_MIN_S
        while not self._halt.is_set():
            try:
                snap = self.coord.snapshot()
                self.heard = time.monotonic()
                self.reads += 1
                self._publish(View.of(snap))
                if self._failing:
                    log.info("etcd watch re-established", extra={"revision": snap.revision, "breaks": self.breaks})
                    self._failing = False
                self._follow(snap.revision + 1)
                backoff = RETRY_MIN_S
            except TimeoutError:
                continue  # a silent stream: read afresh and watch again
            except (CoordinationError, WatchBroken, OSError, ValueError, http.client.HTTPException) as exc:
                if self._halt.is_set():
                    break
                self.breaks += 1
                if not self._failing:
                    log.warning("etcd watch broken; keeping the last view", extra={
                        "detail": str(exc), "revision": None if self.view is None else self.view.revision})
                    self._failing = True
                self._halt.wait(backoff)
                backoff = min(RETRY_MAX_S, backoff * 2)

    def _publish(self, view: View) -> None:
        if view is self.view:
            return
        self.view = view
        try:
            self.on_change(view)
        except Exception:  # the watch must outlive a bad subscriber
            log.exception("discovery subscriber failed")

    def _open(self, revision: int) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        body = orjson.dumps({"create_request": {"key": b64(self.prefix), "range_end": prefix_end(self.prefix),
                                                "start_revision": revision, "progress_notify": True}})
        eps = self.coord.endpoints
        last: Exception | None = None
        for i in range(len(eps)):
            k = (self._endpoint + i) % len(eps)
            scheme, _, rest = eps[k].partition("://")
            host, _, port = rest.rstrip("/").rpartition(":")
            cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            conn = cls(host.strip("[]"), int(port), timeout=self.timeout_s)
            try:
                conn.request("POST", "/v3/watch", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                last = exc
                continue
            if resp.status != 200:
                conn.close()
                last = WatchBroken(f"HTTP {resp.status}")
                continue
            if conn.sock is not None:
                conn.sock.settimeout(self.quiet_s)
            self._endpoint = k
            return conn, resp
        raise WatchBroken(f"no etcd endpoint accepted the watch: {last}")

    def _follow(self, revision: int) -> None:
        conn, resp = self._open(revision)
        self._conn = conn
        try:
            while not self._halt.is_set():
                line = resp.readline(MAX_LINE)
                if not line:
                    raise WatchBroken("the watch stream ended")
                if len(line) >= MAX_LINE and not line.endswith(b"\n"):
                    raise WatchBroken(f"a watch message longer than {MAX_LINE} bytes")
                if not line.strip():
                    continue
                self.heard = time.monotonic()
                msg = orjson.loads(line)
                result = msg.get("result") if isinstance(msg, dict) else None
                if not isinstance(result, dict):
                    raise WatchBroken(f"etcd: {msg.get('error') if isinstance(msg, dict) else msg!r}")
                if result.get("canceled") or result.get("compact_revision"):
                    raise WatchBroken(f"watch cancelled: {result.get('cancel_reason') or 'compacted'}")
                events = result.get("events")
                if events and self.view is not None:
                    self._publish(apply(self.view, self.prefix, events))
        finally:
            self._conn = None
            conn.close()


class Registration(threading.Thread):
    """Keeps ``kind/name`` = ``value`` in etcd under a lease of ``ttl_s``, renewed every third of
    it; registers again (new lease) when the lease was lost. ``stop`` revokes it."""

    def __init__(self, endpoints: tuple[str, ...], prefix: str, kind: str, name: int | str, value: bytes,
                 ttl_s: int, timeout_s: float = 1.0) -> None:
        super().__init__(name=f"zlog-register-{kind}", daemon=True)
        self.coord = Coordinator(endpoints, prefix, timeout_s)
        self.kind, self.key_name, self.value = kind, name, value
        self.ttl_s = max(1, ttl_s)
        self.lease: int | None = None
        self._halt = threading.Event()
        self._failing = False

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                if self.lease is None or self.coord.keepalive(self.lease) <= 0:
                    lease = self.coord.grant(self.ttl_s)
                    self.coord.put_leased(self.kind, self.key_name, self.value, lease)
                    log.info("registered in etcd", extra={"kind": self.kind, "key": self.key_name,
                                                           "again": self.lease is not None})
                    self.lease = lease
                self._failing = False
            except CoordinationError as exc:
                if not self._failing:
                    log.warning("etcd registration not renewed", extra={"kind": self.kind, "key": self.key_name,
                                                                        "detail": str(exc)})
                    self._failing = True
            self._halt.wait(self.ttl_s / 3)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=2)
        if self.lease is not None:
            try:
                self.coord.revoke(self.lease)
            except CoordinationError:
                pass
