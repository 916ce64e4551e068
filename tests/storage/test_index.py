"""The sparse offset index as the module header defines it, whatever the chunking of the bytes.

Invariants:
- A block starting at ``s`` ends after the first line whose newline sits at or after
  ``s + interval - 1``; each entry is (lines so far, end of the block, xxh3_64 of the block).
- Feeding the same bytes in any pieces (and through copies of the builder) gives the same entries.
"""

from __future__ import annotations

import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from zlog.storage.index import IndexBuilder, IndexEntry


def by_definition(data: bytes, interval: int) -> list[IndexEntry]:
    out: list[IndexEntry] = []
    start = lines = 0
    for pos, byte in enumerate(data):
        if byte != 0x0A:
            continue
        lines += 1
        if pos >= start + interval - 1:
            out.append((lines, pos + 1, xxhash.xxh3_64_intdigest(data[start:pos + 1])))
            start = pos + 1
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 300), max_size=40), st.sampled_from([1, 2, 7, 64, 100, 4096]),
       st.lists(st.integers(0, 1 << 14), max_size=6), st.booleans())
def test_entries_follow_the_definition_in_any_chunking(lengths: list[int], interval: int, cuts: list[int],
                                                       copy: bool) -> None:
    data = b"".join(b"x" * n + b"\n" for n in lengths)
    edges = sorted({min(c, len(data)) for c in cuts})
    builder = IndexBuilder(interval)
    entries: list[IndexEntry] = []
    for a, b in zip([0, *edges], [*edges, len(data)], strict=True):
        entries += builder.feed(data[a:b])
        if copy:
            builder = builder.copy()
    assert entries == by_definition(data, interval)
    assert builder.lines == len(lengths) and builder.pos == len(data)
