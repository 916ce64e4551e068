"""What a reader of partition states says about replication: which partitions are
under-replicated and which moves are under way, and why. Pure; shared by ``zlog status``
(``zlog.ops.report``) and ``GET /v1/partitions``, so both say the same.

A partition entry is the dict a leader's STATS answer yields (``replicas``, ``isr``, and while
a reassignment runs ``reassigning``, ``adding``, ``removing``, ``draining``).

Invariants:
- A replica that a reassignment is adding counts as catching up, not as missing: a partition
  is under-replicated when its ISR is smaller than its replicas less those being added.
- A move's cause is ``drain`` when a removed replica's worker is drained, else
  ``rereplicate`` when one is not up (it is being replaced: lost), else ``balance``.
- Nothing here does I/O or imports the replication shell (the gateway of an unreplicated
  cluster loads this module alone).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def under_replicated(entry: dict[str, Any]) -> bool:
    return len(entry.get("isr", ())) < len(entry.get("replicas", ())) - len(entry.get("adding", ()))


def move_cause(entry: dict[str, Any], up: set[int]) -> str | None:
    """``rereplicate``, ``drain`` or ``balance`` while a reassignment runs, else None."""
    if not entry.get("reassigning"):
        return None
    removing = set(entry.get("removing", ()))
    if removing & set(entry.get("draining", ())):
        return "drain"
    return "rereplicate" if removing - up else "balance"


def summarize(partitions: Iterable[dict[str, Any]], up: set[int]) -> dict[str, Any]:
    """Mark each entry ``under_replicated`` (and ``move`` while one runs); the cluster's summary."""
    under, moves = [], []
    for e in partitions:
        e["under_replicated"] = under_replicated(e)
        if e["under_replicated"]:
            under.append(e["partition"])
        why = move_cause(e, up)
        if why is not None:
            e["move"] = why
            moves.append({"partition": e["partition"], "adding": list(e.get("adding", ())),
                          "removing": list(e.get("removing", ())), "why": why})
    return {"under_replicated": under, "moves": moves}
