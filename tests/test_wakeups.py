"""tools/wakeups.py reads every thread of a process from /proc: what must hold is that a thread
that wakes N times shows at least N wake-ups and N voluntary switches, that the main thread is
named as such, and that the table has a row per thread that did something plus the total."""

from __future__ import annotations

import os
import threading
import time

from tools.wakeups import snapshot, table


def test_a_thread_that_sleeps_n_times_shows_n_wake_ups() -> None:
    go, done, leave = threading.Event(), threading.Event(), threading.Event()

    def sleeper() -> None:
        go.wait()
        for _ in range(20):
            time.sleep(0.002)
        done.set()
        leave.wait()  # alive until the second snapshot

    t = threading.Thread(target=sleeper)
    t.start()
    time.sleep(0.05)  # started and parked on the event
    before = snapshot({"me": os.getpid()})
    go.set()
    assert done.wait(10)
    after = snapshot({"me": os.getpid()})
    leave.set()
    t.join()
    assert "me/main" in after, list(after)
    others = [k for k in after if k != "me/main" and k in before]
    grew = [k for k in others if after[k][4] - before[k][4] >= 20 and after[k][5] - before[k][5] >= 20]
    assert grew, (list(before), list(after))
    rows = table(before, after, 20, "sleep").splitlines()
    assert any(r.startswith(f"| {grew[0]} |") for r in rows)
    assert rows[-1].startswith("| **all** |")
