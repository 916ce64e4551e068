"""Shared helpers for the storage tests: tiny configs that force rolls, and record factories."""

from __future__ import annotations

from pathlib import Path

from zlog.config import FsyncPolicy, StorageConfig
from zlog.storage import PartitionLog


def tiny(**kw: object) -> StorageConfig:
    base: dict[str, object] = {"segment_bytes": 1500, "index_interval_bytes": 200,
                               "fsync": FsyncPolicy("never")}
    base.update(kw)
    return StorageConfig(**base)  # type: ignore[arg-type]


def rec(i: int, pad: int = 0) -> bytes:
    """A record shaped like the stored line, varying in length so blocks cut at odd places."""
    return (b'{"timestamp":%d,"service":"svc%d","level":"INFO","message":"m%s","i":%d}'
            % (1_000_000 + i, i % 4, b"x" * ((i * 7 + pad) % 53), i))


class FakeClock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def fill(log: PartitionLog, n: int, batch: int = 3, start: int = 0) -> list[bytes]:
    """Append n records in batches (timestamps = 1_000_000 + i), one commit per batch."""
    out = []
    i = start
    while i < start + n:
        lines = [rec(j) for j in range(i, min(i + batch, start + n))]
        log.append(lines, 1_000_000 + i + len(lines) - 1)
        log.commit()
        out += lines
        i += len(lines)
    return out


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}
