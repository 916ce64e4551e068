"""FNV-1a-32 and partitioning, pinned to the original project's vectors.

Invariants:
- The hash and the service -> partition mapping never change: stored data depends on them.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zlog.protocol.hashing import Partitioner, fnv1a_32, partition_for


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", 0x811C9DC5), (b"a", 0xE40C292C), (b"foobar", 0xBF9CF968)],
)
def test_fnv1a_32_reference_vectors(data: bytes, expected: int) -> None:
    assert fnv1a_32(data) == expected


@pytest.mark.parametrize(
    ("service", "partition"),
    [
        ("event_creator", 0),
        ("focus_allocator", 1),
        ("notification_service", 2),
        ("auth_service", 3),
        ("", 1),
    ],
)
def test_the_original_services_land_in_their_partitions(service: str, partition: int) -> None:
    assert partition_for(service, 4) == partition
    assert partition_for(service.encode(), 4) == partition
    assert Partitioner(4)(service) == partition


def test_utf8_bytes_are_hashed() -> None:
    assert partition_for("café", 7) == fnv1a_32("café".encode()) % 7


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=1024))
def test_partition_is_in_range_and_cached_results_agree(key: bytes, partitions: int) -> None:
    p = Partitioner(partitions, max_cached=4)
    assert 0 <= p(key) < partitions
    assert p(key) == partition_for(key, partitions) == fnv1a_32(key) % partitions


def test_cache_stays_bounded() -> None:
    p = Partitioner(4, max_cached=8)
    for i in range(100):
        p(f"service-{i}")
    assert len(p._cache) <= 8


def test_zero_partitions_is_refused() -> None:
    with pytest.raises(ValueError):
        Partitioner(0)
