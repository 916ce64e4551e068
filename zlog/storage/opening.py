"""Opening a partition directory: which files are ours, what a stop left half done, the segments in order.

Invariants:
- Unknown files are logged and left alone; index files without data are removed (leftovers of an
  interrupted roll or delete).
- Half-done steps are finished or discarded so exactly one form of each segment remains: an
  unfinished roll (``.batches.tmp``), seal (``.jsonl.zst.tmp``) or unseal (``.jsonl.tmp``).
- The newest segment is always plain and recovered completely (``recovery.recover_active``);
  closed ones are loaded (``recovery.load_closed``) or resolved to their sealed form.
- On an OSError every segment opened so far is closed before it propagates.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from zlog.storage import sealer as sealing
from zlog.storage.recovery import Report, load_closed, recover_active
from zlog.storage.scan import AnySegment
from zlog.storage.sealed import SEALED, SEALED_TMP
from zlog.storage.segment import DATA, create_batches_file, fsync_dir, stem

log = logging.getLogger("zlog.storage")
KNOWN = re.compile(r"^(\d{20})\.(jsonl|index|timeindex|batches|rollup|jsonl\.zst)$")


def open_segments(directory: Path, interval: int, now_ms: int, stats: dict[str, float]
                  ) -> tuple[list[AnySegment], Report]:
    """The directory's segments, oldest first, and what recovery found on the way."""
    segments: list[AnySegment] = []
    bases: set[int] = set()
    plain: set[int] = set()
    stray: dict[int, list[Path]] = {}
    for p in sorted(directory.iterdir()):
        m = KNOWN.match(p.name)
        if m and m.group(2) in ("jsonl", "jsonl.zst"):
            bases.add(int(m.group(1)))
            plain.update([int(m.group(1))] if m.group(2) == "jsonl" else [])
        elif m:
            stray.setdefault(int(m.group(1)), []).append(p)
        elif p.name.endswith(".batches.tmp") and KNOWN.match(p.name[:-4]):
            p.unlink()  # an unfinished roll: the previous segment is still the active one
        elif p.name.endswith(SEALED_TMP) and KNOWN.match(p.name[:-4]):
            p.unlink()  # an unfinished seal: the plain form is still whole
        elif p.name.endswith(DATA + ".tmp") and KNOWN.match(p.name[:-4]):
            p.unlink()  # an unfinished unseal: the sealed form is still whole
        else:
            log.warning("%s: unknown file in partition directory, left alone", p)
    for base, paths in stray.items():
        if base not in bases:
            for p in paths:  # leftovers of an interrupted delete or roll: ours, no data
                log.info("%s: removing index file without data", p)
                p.unlink()
    ordered = sorted(bases)
    report = Report()
    try:
        for i, base in enumerate(ordered[:-1]):
            sealed = (sealing.resolve(directory, base, ordered[i + 1], base in plain, stats)
                      if (directory / (stem(base) + SEALED)).exists() else None)
            segments.append(sealed or load_closed(directory, base, ordered[i + 1], interval, report))
        if ordered and ordered[-1] not in plain:
            sealing.unseal(directory, ordered[-1])  # cut back into a sealed segment
        elif ordered and (directory / (stem(ordered[-1]) + SEALED)).exists():
            (directory / (stem(ordered[-1]) + SEALED)).unlink()  # an unseal finished its rename
        if ordered:
            segments.append(recover_active(directory, ordered[-1], interval, now_ms, report))
        else:
            create_batches_file(directory, 0, now_ms, [])
            segments.append(recover_active(directory, 0, interval, now_ms, report))
            fsync_dir(directory)
    except OSError:
        for seg in segments:
            seg.close()
        raise
    return segments, report
