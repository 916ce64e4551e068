"""The membership thread against a real etcd: the lease kept safe whatever the poll, and the
worker loop woken by a change the moment the watch sees it, not at the next poll."""

from __future__ import annotations

import os
import select
import time

from tests._cluster import wait_until
from tests._etcd import EtcdServer
from zlog.replication.coordination import Coordinator, WorkerInfo
from zlog.replication.membership import Membership


def test_the_lease_stays_safe_and_a_change_wakes_the_loop_at_once(etcd: EtcdServer) -> None:
    coord = Coordinator((etcd.endpoint,), "/m1", 0.5)
    # A poll far longer than the lease: only renewals and the watch can run a turn in time.
    m = Membership(coord, WorkerInfo(0, "h0", os.getpid(), "tcp://127.0.0.1:1"), {}, 3000, poll_s=30)
    m.start()
    try:
        wait_until(lambda: m.snapshot is not None and 0 in m.snapshot.workers, timeout=10, what="registration")
        deadline = time.monotonic() + 4  # twice the fencing margin (2/3 of the 3 s lease)
        while time.monotonic() < deadline:
            assert not m.fenced(), "the lease was not renewed in time"
            time.sleep(0.05)
        m.woken()
        version = m.version
        t0 = time.monotonic()
        Coordinator((etcd.endpoint,), "/m1").set_drain(5, True)
        readable, _, _ = select.select([m.wake_fd], [], [], 5)
        took = time.monotonic() - t0
        assert readable and took < 0.5, f"woken after {took:.2f} s"
        assert m.version > version and m.snapshot is not None and 5 in m.snapshot.drains
        m.woken()
        assert not select.select([m.wake_fd], [], [], 0)[0]
    finally:
        m.stop()
