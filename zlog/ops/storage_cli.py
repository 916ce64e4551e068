"""``zlog verify`` and ``zlog compact``: checking and compacting partition files on this node.

Invariants:
- ``verify`` only reads (safe while the cluster runs); exit 1 when any problem was found, and
  every problem is printed naming its file and block.
- ``compact`` opens each partition like its storage worker would (recovery included), so it must
  run while that worker is stopped: it seals every closed plain segment and applies retention.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from zlog.config import Config
from zlog.storage import PartitionLog
from zlog.storage.verify import verify_tree


def _roots(cfg: Config, args: argparse.Namespace) -> list[Path]:
    return [Path(p) for p in args.paths] or [cfg.cluster.data_dir]


def verify(cfg: Config, args: argparse.Namespace) -> int:
    files = blocks = records = bad = 0
    for root in _roots(cfg, args):
        if not root.exists():
            print(f"{root}: no such file or directory")
            bad += 1
            continue
        for c in verify_tree(root):
            files += 1
            blocks += c.blocks
            records += c.records
            for problem in c.problems:
                print(problem)
            bad += bool(c.problems)
    print(f"verified {files} segment files, {blocks} blocks ({records} sealed records): "
          f"{'OK' if not bad else f'{bad} damaged'}")
    return 1 if bad else 0


def compact(cfg: Config, args: argparse.Namespace) -> int:
    for root in _roots(cfg, args):
        dirs = sorted({p.parent for p in root.rglob("*.batches")})  # every tenant's partitions too
        for d in dirs:
            t0 = time.monotonic()
            with PartitionLog.open(d, cfg.storage) as log:
                sealed = log.seal_closed(cfg.seal.block_bytes, cfg.seal.level)
                deleted = log.enforce_retention()
                print(f"{d}: sealed {sealed} segments, retention deleted {len(deleted)}; "
                      f"{log.size_bytes} raw bytes stored in {log.stored_bytes} "
                      f"({log.index_bytes} of index), {time.monotonic() - t0:.1f} s")
    return 0
