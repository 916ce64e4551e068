"""The ``<base>.batches`` file: an append-only list of the committed batches of one segment.

Each entry is 74 fixed bytes: ``kind, base_offset, count, end_pos, max_ts, seg_max_ts, data_hash,
sequence, pid_len, pid[16]`` then an xxh32 of those bytes. Kinds:

- ``HEADER`` (first entry): ``base_offset`` is the segment's base, ``max_ts`` its creation time (ms).
- ``PRODUCER``: one remembered batch of the producer table as it stood when the segment was
  created (``base_offset, count, sequence, pid``), oldest first, so replaying them rebuilds the table.
- ``BATCH``: a committed batch: offsets ``[base_offset, base_offset + count)`` end at byte
  ``end_pos`` of the segment, ``data_hash`` is the xxh3_64 of the batch's bytes, ``max_ts`` the
  batch's max timestamp and ``seg_max_ts`` the segment's max so far; ``sequence`` is -1 without a
  producer.

Invariants:
- A batch is acknowledged only after its BATCH entry and its data are written (and fsynced when
  the policy says so), so the last complete BATCH entry marks the end of acknowledged data: recovery
  cuts the segment there and drops entries pointing past the segment's end. A batch is all or nothing.
- A torn or garbled entry ends the file: everything from it on is ignored (and cut by recovery).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import xxhash

HEADER, PRODUCER, BATCH = 0, 1, 2
_BODY = struct.Struct("<BQIQqqQqB16s")
_CRC = struct.Struct("<I")
ENTRY_SIZE = _BODY.size + _CRC.size


@dataclass(frozen=True, slots=True)
class BatchEntry:
    kind: int
    base_offset: int
    count: int = 0
    end_pos: int = 0
    max_ts: int = -1
    seg_max_ts: int = -1
    data_hash: int = 0
    sequence: int = -1
    producer_id: bytes = b""

    def encode(self) -> bytes:
        body = _BODY.pack(
            self.kind, self.base_offset, self.count, self.end_pos, self.max_ts, self.seg_max_ts,
            self.data_hash, self.sequence, len(self.producer_id), self.producer_id,
        )
        return body + _CRC.pack(xxhash.xxh32_intdigest(body))


def decode(data: bytes) -> tuple[list[BatchEntry], int]:
    """The valid entries at the start of ``data`` and the byte length they cover."""
    out: list[BatchEntry] = []
    size = _BODY.size
    end = 0
    while end + ENTRY_SIZE <= len(data):
        body = data[end:end + size]
        (crc,) = _CRC.unpack_from(data, end + size)
        if xxhash.xxh32_intdigest(body) != crc:
            break
        kind, base, count, pos, mts, smts, dh, seq, plen, pid = _BODY.unpack(body)
        if kind not in (HEADER, PRODUCER, BATCH) or plen > 16:
            break
        out.append(BatchEntry(kind, base, count, pos, mts, smts, dh, seq, pid[:plen]))
        end += ENTRY_SIZE
    return out, end
