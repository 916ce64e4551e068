"""Retention: which of a partition's oldest segments are past its size or age limit.

Invariants:
- Only whole segments go, oldest first, and never the last (active) one.
- A segment goes while the partition's stored bytes (sealed files counted as stored, plain ones
  by data size) are over ``retention_bytes``, or while its newest record is older than
  ``retention_ms``; a segment without a known newest record is judged by its file's mtime.
- It decides only: the log deletes the files (``PartitionLog.enforce_retention``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from zlog.config import StorageConfig
from zlog.storage.scan import AnySegment
from zlog.storage.sealed import SealedSegment
from zlog.storage.segment import DATA


def stored_bytes(seg: AnySegment) -> int:
    return seg.stored_bytes if isinstance(seg, SealedSegment) else seg.size


def expired(segments: Sequence[AnySegment], cfg: StorageConfig, now_ms: int) -> int:
    """How many of the oldest ``segments`` retention deletes now."""
    if cfg.retention_bytes <= 0 and cfg.retention_ms <= 0:
        return 0
    total = sum(map(stored_bytes, segments))
    n = 0
    for seg in segments[:-1]:
        data = seg.path() if isinstance(seg, SealedSegment) else seg.path(DATA)
        newest = seg.max_ts if seg.max_ts >= 0 else int(os.stat(data).st_mtime * 1000)
        if not ((cfg.retention_bytes > 0 and total > cfg.retention_bytes)
                or (cfg.retention_ms > 0 and newest < now_ms - cfg.retention_ms)):
            break
        total -= stored_bytes(seg)
        n += 1
    return n
