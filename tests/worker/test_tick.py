"""How often a worker's loop runs its periodic duties (``worker.process.tick_ms``, pure).

What must hold: often enough for the heartbeat (never slower than heartbeat_ms) and for an
``interval`` fsync policy (never slower than its interval), 100 ms with replication (its long
polls and retries; etcd's changes wake the loop by themselves), and otherwise no more than four
times a second, whatever the message rate.
"""

from __future__ import annotations

import pytest

from zlog.config import load
from zlog.worker.process import tick_ms


@pytest.mark.parametrize(("heartbeat", "fsync", "replicated", "expected"), [
    (1000, "always", False, 250),
    (200, "always", False, 200),
    (1000, "interval:50", False, 50),
    (1000, "interval:5000", False, 250),
    (1000, "never", True, 100),
    (10, "always", True, 10),
])
def test_tick(heartbeat: int, fsync: str, replicated: bool, expected: int) -> None:
    cfg = load(None, env={"ZLOG_CONFIG": "/dev/null"}, overrides=[("router", "heartbeat_ms", str(heartbeat)),
                                                                 ("storage", "fsync", fsync)])
    assert tick_ms(cfg, replicated=replicated) == expected
