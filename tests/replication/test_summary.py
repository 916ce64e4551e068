"""Under-replication and the cause of each move, as status readers report them (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from zlog.replication.summary import move_cause, summarize, under_replicated


def entry(replicas: list[int], isr: list[int], adding: list[int] | None = None, removing: list[int] | None = None,
          draining: list[int] | None = None) -> dict[str, Any]:
    return {"partition": 0, "replicas": replicas, "isr": isr, "reassigning": bool(adding or removing),
            "adding": adding or [], "removing": removing or [], "draining": draining or []}


@pytest.mark.parametrize(("e", "up", "under", "why"), [
    (entry([0, 1, 2], [0, 1, 2]), {0, 1, 2}, False, None),
    (entry([0, 1, 2], [0, 1]), {0, 1}, True, None),  # 2 down, not lost yet
    (entry([0, 1, 2, 3], [0, 1], adding=[3], removing=[2]), {0, 1, 3}, True, "rereplicate"),  # 2 of 3 until 3 joins
    (entry([0, 1, 2, 3], [0, 1, 2], adding=[3], removing=[2], draining=[2]), {0, 1, 2, 3}, False, "drain"),
    (entry([0, 1, 2, 3], [0, 1, 2], adding=[3], removing=[2], draining=[2]), {0, 1, 3}, False, "drain"),
    (entry([0, 1, 2, 3], [0, 1, 2, 3], adding=[3], removing=[2]), {0, 1, 2, 3}, False, "balance"),
    (entry([0, 1, 2, 3], [0, 3], adding=[3], removing=[2]), {0, 1, 3}, True, "rereplicate"),  # 1 lagging too
    (entry([0], [0]), set(), False, None),  # unreplicated
])
def test_under_replication_and_move_causes(e: dict[str, Any], up: set[int], under: bool, why: str | None) -> None:
    assert under_replicated(e) is under
    assert move_cause(e, up) == why
    s = summarize([e], up)
    assert s["under_replicated"] == ([0] if under else [])
    assert s["moves"] == ([] if why is None else [{"partition": 0, "adding": e["adding"], "removing": e["removing"],
                                                    "why": why}])
