"""Named errors of the storage engine.

Invariants:
- Every error the engine raises on purpose is a ``StorageError``; ``code`` is the wire NACK code
  (see ``zlog/errors.py``) so the worker maps it without a lookup table of its own.
- Input errors (``InvalidRecord``, ``RecordTooLarge``, ``OutOfOrderSequence``) are raised before
  anything of the batch is staged; I/O errors (``DiskFull``, ``StorageError``) are raised after the
  files were cut back to their last committed length.
"""

from __future__ import annotations


class StorageError(Exception):
    """The engine could not do what was asked; the log is still consistent and usable."""

    code = "STORAGE_ERROR"


class InvalidRecord(StorageError):
    """A line is not a single-line JSON object (must start with ``{``, end with ``}``, no newline)."""

    code = "INVALID_RECORD"

    def __init__(self, message: str, *, index: int = -1) -> None:
        super().__init__(message)
        self.index = index  # position of the first bad line in the batch, -1 when unknown


class RecordTooLarge(InvalidRecord):
    """A line is longer than ``StorageConfig.max_record_bytes``."""

    code = "RECORD_TOO_LARGE"


class OutOfOrderSequence(StorageError):
    """A producer skipped a sequence number; it must resend in order from ``expected``."""

    code = "OUT_OF_ORDER_SEQUENCE"

    def __init__(self, producer_id: bytes, sequence: int, expected: int) -> None:
        super().__init__(f"producer {producer_id.hex()}: sequence {sequence}, expected <= {expected}")
        self.producer_id = producer_id
        self.sequence = sequence
        self.expected = expected


class DiskFull(StorageError):
    """The disk (or the quota) is full: ENOSPC or EDQUOT. Retry once space is back."""

    code = "DISK_FULL"
