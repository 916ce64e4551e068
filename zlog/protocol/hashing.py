"""Partitioning: 32-bit FNV-1a over the UTF-8 bytes of the key, modulo the partition count.

Invariants:
- Pure and deterministic across processes, hosts and Python versions (never the salted builtin
  ``hash()``); pinned to the reference vectors of the original project in the tests.
- ``Partitioner`` caches results in a bounded dict; a cache hit costs one dict lookup.
"""

from __future__ import annotations

FNV32_OFFSET = 0x811C9DC5
FNV32_PRIME = 0x01000193
_MASK = 0xFFFFFFFF


def fnv1a_32(data: bytes) -> int:
    h = FNV32_OFFSET
    for byte in data:
        h = ((h ^ byte) * FNV32_PRIME) & _MASK
    return h


def partition_for(key: str | bytes, partitions: int) -> int:
    raw = key.encode() if isinstance(key, str) else key
    return fnv1a_32(raw) % partitions


class Partitioner:
    """``partition_for`` with a bounded memo, for hot paths that see few distinct keys."""

    __slots__ = ("partitions", "_cache", "_max")

    def __init__(self, partitions: int, max_cached: int = 65_536) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.partitions = partitions
        self._cache: dict[str | bytes, int] = {}
        self._max = max_cached

    def __call__(self, key: str | bytes) -> int:
        p = self._cache.get(key)
        if p is None:
            p = partition_for(key, self.partitions)
            if len(self._cache) >= self._max:
                self._cache.clear()  # crude but bounded; distinct keys beyond this are rare
            self._cache[key] = p
        return p
