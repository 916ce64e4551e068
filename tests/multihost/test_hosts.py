"""A cluster spread over three hosts (Linux network namespaces) behind nginx, losing one host.

The hosts are those of ``tests/multihost/_hosts.py`` at R = 1: each partition lives on one worker.

Invariants checked:
- every record acknowledged (200, or 202 = in a gateway's fsynced WAL) is stored exactly once,
  once the cut host is back and the WALs have drained;
- while a host is cut off, requests through nginx keep being acknowledged by the other hosts.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from tests._netns import Lab
from tests.conftest import ProcessGroup
from tests.multihost._hosts import (
    HOSTS,
    LB,
    count_lines,
    http_from,
    loadgen,
    require_namespaces,
    start_host,
    start_nginx,
    stored_tags,
)

pytestmark = pytest.mark.cluster

require_namespaces()


def test_three_hosts_behind_nginx_lose_one_and_get_it_back(process_group: ProcessGroup, tmp_path: Path) -> None:
    with Lab(hosts=HOSTS + 1) as lab:
        for h in range(HOSTS):
            start_host(process_group, lab, tmp_path, h)
        lb = start_nginx(process_group, lab, tmp_path)
        process_group.wait_for(lambda: http_from(lab, LB, f"{lb}/ready") == 200, timeout=60,
                               what="the cluster ready through nginx")

        # Load through nginx while host 2 is cut off for a while, then comes back.
        acks = loadgen(process_group, lab, tmp_path, "cut", seconds=9)
        time.sleep(2)
        lab.cut(2)
        before = count_lines(acks)
        time.sleep(4)
        during = count_lines(acks) - before
        lab.restore(2)
        process_group.wait_for(lambda: not process_group["loadgen-cut"].alive(), timeout=60, what="load to end",
                               allow_exit=True)
        summary = json.loads(process_group["loadgen-cut"].output().strip().splitlines()[-1])
        assert summary["acknowledged"] > 0
        acked = [json.loads(line)["seq"] for line in acks.read_text().splitlines()]
        assert len(acked) == summary["acknowledged"]
        assert during > 0, "nothing was acknowledged while host 2 was cut off"

        # Host 2 is back: every router sees its worker again and the WALs drain.
        process_group.wait_for(lambda: http_from(lab, LB, f"{lb}/ready") == 200, timeout=60,
                               what="the cluster ready again", allow_exit=True)

        def everywhere() -> Counter[str]:
            return sum((stored_tags(tmp_path / f"data{h}") for h in range(HOSTS)), Counter())

        def all_stored() -> bool:
            seen = everywhere()
            return all(seen[t] >= 1 for t in acked)

        process_group.wait_for(all_stored, timeout=60, what="every acknowledged record stored", allow_exit=True)
        seen = everywhere()
        doubled = [t for t in acked if seen[t] != 1]
        assert doubled == [], f"{len(doubled)} acknowledged records stored more than once"
