"""A router's link to etcd in a replicated cluster: its own ``routers/<index>`` key under a lease,
and the watched view of workers and partition leaders that its routing table follows.

Invariants:
- The watch runs on its own thread (``zlog.replication.watch.Discovery``); the router's loop
  learns of a new view through an inproc PULL socket in its poller, so a leader change reaches
  the routing table in the same loop turn as the watch event, never a poll interval later.
- The loop is the only reader of ``take``; the watch thread is the only user of the PUSH side.
- A router registers what producers must connect to: its front and back endpoints, with a
  wildcard bind address replaced by ``cluster.host``.
"""

from __future__ import annotations

import os
import time

import zmq

from zlog.config import Config
from zlog.ops.metrics import RouterMetrics
from zlog.replication.coordination import RouterInfo, call_timeout
from zlog.replication.discovery import View
from zlog.replication.etcd_server import local_endpoints
from zlog.replication.watch import Discovery, Registration


def advertised(endpoint: str, host: str) -> str:
    """``endpoint`` as another host reaches it: a wildcard bind address becomes ``host``."""
    scheme, _, rest = endpoint.partition("://")
    addr, sep, port = rest.rpartition(":")
    if sep and addr in ("*", "0.0.0.0", "[::]", "::"):
        return f"{scheme}://{host}:{port}"
    return endpoint


class RouterEtcd:
    def __init__(self, cfg: Config, index: int, ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        endpoints = local_endpoints(cfg)
        cc = cfg.cluster
        ttl_s = max(1, round(cc.lease_ttl_ms / 1000))
        self.info = RouterInfo(index, cc.host, os.getpid(), advertised(cfg.router.front[index], cc.host),
                               advertised(cfg.router.back[index], cc.host))
        self._ctx = ctx
        self._addr = f"inproc://zlog-router-view-{index}-{id(self)}"
        self.wake = ctx.socket(zmq.PULL)
        self.wake.setsockopt(zmq.LINGER, 0)
        self.wake.bind(self._addr)
        self._push: zmq.Socket[bytes] | None = None
        self._breaks = 0  # watch breaks already counted in the metric
        self.registration = Registration(endpoints, cc.etcd_prefix, "routers", index, self.info.to_json(), ttl_s,
                                         timeout_s=call_timeout(cc.lease_ttl_ms))
        self.discovery = Discovery(endpoints, cc.etcd_prefix, self._changed,
                                   timeout_s=call_timeout(cc.lease_ttl_ms), name=f"zlog-discovery-{index}")

    def start(self) -> None:
        self.registration.start()
        self.discovery.start()

    def _changed(self, view: View) -> None:  # on the watch thread
        if self._push is None:
            self._push = self._ctx.socket(zmq.PUSH)
            self._push.setsockopt(zmq.LINGER, 0)
            self._push.setsockopt(zmq.SNDHWM, 1)
            self._push.connect(self._addr)
        try:
            self._push.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass  # a wake-up is already waiting; it will read the newest view

    def take(self) -> View | None:
        """The newest view (on the router's loop, after ``wake`` polled readable)."""
        while True:
            try:
                self.wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        return self.discovery.view

    def flush_metrics(self, m: RouterMetrics, view: View | None) -> None:
        d = self.discovery
        if view is not None:
            m.etcd_revision.set(view.revision)
        if d.heard:
            m.etcd_view_age.set(round(time.monotonic() - d.heard, 3))
        if d.breaks > self._breaks:
            m.etcd_watch_breaks.inc(d.breaks - self._breaks)
            self._breaks = d.breaks

    def close(self) -> None:
        self.discovery.stop()
        self.registration.stop()  # revoked: producers drop this router at once
        if self.discovery.is_alive():
            self.discovery.join(timeout=1)
        if self._push is not None and not self.discovery.is_alive():
            self._push.close(0)
        self.wake.close(0)
