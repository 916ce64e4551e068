"""The worker's one check of a batch blob (``stored.check_batch``) against the two it merges.

Invariants:
- For every blob, ``check_batch`` gives the verdict of the record check of each line (the exact
  path, ``check_lines``) followed by the engine's form check (``batchdata.checked``): the same
  ``Checked``, the same ``RecordError``, or the same named engine error.
- ``batchdata.split`` accepts a blob exactly when every line is a ``{...}`` of at most
  ``max_record_bytes`` and the blob ends with a newline (a per-line statement of the rule).
- The fast path really is taken for ordinary blobs (else the equivalence would be vacuous).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.loadgen import generate
from zlog.ingest import stored
from zlog.ingest.records import Limits, RecordError, encode_batch
from zlog.storage import batchdata
from zlog.storage.batchdata import Checked
from zlog.storage.errors import InvalidRecord, RecordTooLarge

SMALL = Limits(max_service_bytes=16, max_level_bytes=8, max_message_bytes=64, max_labels=3,
               max_label_key_bytes=8, max_label_value_bytes=16, max_record_bytes=400)
GOOD = b'{"timestamp":1795675988031,"service":"api","level":"INFO","message":"m","labels":{"a":"1"},' \
       b'"received_at":1795675988040,"ingested_node_id":"n1","client_ip":"127.0.0.1"}'


def two_step(data: bytes, limits: Limits) -> Checked | RecordError | str:
    """The reference verdict: each line's record check, then the engine's check of the blob."""
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    bad = stored.check_lines(lines, limits)
    if bad is not None:
        return bad
    try:
        return batchdata.checked(data, limits.max_record_bytes)
    except (InvalidRecord, RecordTooLarge) as exc:
        return f"{type(exc).__name__}: {exc} @{exc.index}"


def merged(data: bytes, limits: Limits) -> Checked | RecordError | str:
    try:
        return stored.check_batch(data, limits)
    except (InvalidRecord, RecordTooLarge) as exc:
        return f"{type(exc).__name__}: {exc} @{exc.index}"


def blob(lines: list[bytes]) -> bytes:
    return b"\n".join([*lines, b""])


def test_generated_batches_take_the_fast_path_and_are_checked_once() -> None:
    records = generate(random.Random(5), 1_795_675_988_031, 1500)
    groups = encode_batch(records, Limits(), received_at=1_795_675_988_100, client_ip="10.0.0.1", node_id="n")
    data = b"".join(g.data for g in groups.values())
    assert len(data) > Limits().max_record_bytes  # big enough that the longest line is measured
    lines, ok = batchdata.split(data, Limits().max_record_bytes)
    assert ok == Checked(data, 1500, Limits().max_record_bytes) and len(lines) == 1500
    assert stored.check_batch(data, Limits()) == ok == two_step(data, Limits())


@pytest.mark.parametrize(("data", "expected"), [
    (blob([GOOD, b'{"service":"s","message":"m","partition":1}']), RecordError(1, "partition", "not a field of a stored record")),
    (blob([GOOD, b'{"service":"s","message":"m","timestamp":"x"}']), RecordError(1, "timestamp", "must be a non-negative integer of unix milliseconds")),
    (blob([GOOD, b'{"service":"s","message":"m"},{"service":"s","message":"n"}']), RecordError(1, "", "not valid JSON (or not valid UTF-8)")),
    (blob([GOOD, b'{"service":"s","message":"\xff"}']), RecordError(1, "", "not valid JSON (or not valid UTF-8)")),
    (blob([GOOD, b"[]"]), RecordError(1, "", "each record must be a JSON object")),
    (blob([GOOD, b'{"service":"s","message":"' + b"m" * 65 + b'"}']), RecordError(1, "message", "longer than 64 bytes")),
    (blob([GOOD, b""]), RecordError(1, "", "not valid JSON (or not valid UTF-8)")),
    (GOOD + b"\n" + GOOD, "InvalidRecord: record 1: the batch does not end with a newline @1"),
    (blob([GOOD, b' {"service":"s","message":"m"}']), "InvalidRecord: record 1: not a one-line JSON object @1"),
    (blob([GOOD + b"\r"]), "InvalidRecord: record 0: not a one-line JSON object @0"),
    (blob([GOOD, b'{"service":"s","message":"m","ingested_node_id":"' + b"n" * 400 + b'"}']),
     "RecordTooLarge: record 1: 451 bytes > 400 @1"),
    (b"", "InvalidRecord: empty batch @-1"),
    (b"\n", RecordError(0, "", "not valid JSON (or not valid UTF-8)")),
])
def test_bad_blobs_are_named_as_the_two_checks_named_them(data: bytes, expected: RecordError | str) -> None:
    assert merged(data, SMALL) == expected == two_step(data, SMALL)


def test_a_checked_batch_from_a_looser_bound_is_checked_again_by_the_engine(tmp_path: object) -> None:
    from pathlib import Path

    from zlog.config import StorageConfig
    from zlog.storage import PartitionLog

    line = b'{"service":"s","message":"m","client_ip":"' + b"1" * 300 + b'"}'
    loose = stored.check_batch(blob([line]), Limits(max_record_bytes=1000))
    assert isinstance(loose, Checked)
    with PartitionLog.open(Path(str(tmp_path)), StorageConfig(max_record_bytes=256)) as log, \
            pytest.raises(RecordTooLarge):
        log.append_data(loose, 1)


LINE = st.one_of(
    st.just(GOOD),
    st.just(b'{"service":"s","message":"m"}'),
    st.just(b'{"service":"s","message":"m","metadata":{"k":"v"}}'),
    st.binary(max_size=12).map(lambda b: b"{" + b + b"}"),
    st.binary(max_size=12),
    st.sampled_from([b"{}", b"", b" {}", b"{} ", b"{}\r", b"\t{}", b"[]", b"{", b"}", b"{\"a\":1}"]),
    st.integers(300, 420).map(lambda n: b'{"service":"s","message":"m","client_ip":"' + b"1" * n + b'"}'),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(LINE, max_size=6), st.sampled_from([b"\n", b"", b"\n\n", b"x"]))
def test_the_merged_check_agrees_with_the_two_checks_on_any_blob(lines: list[bytes], tail: bytes) -> None:
    data = b"\n".join(lines) + tail
    assert merged(data, SMALL) == two_step(data, SMALL)


@settings(max_examples=400, deadline=None)
@given(st.lists(LINE, max_size=6), st.booleans())
def test_split_accepts_exactly_terminated_one_line_objects_within_the_bound(lines: list[bytes], terminated: bool) -> None:
    data = b"\n".join(lines) + (b"\n" if terminated else b"")
    parts = data.split(b"\n")
    terminated = not parts[-1]
    rule = bool(data) and terminated and all(p[:1] == b"{" and p[-1:] == b"}" and len(p) <= 400 for p in parts[:-1])
    got, ok = batchdata.split(data, 400)
    assert (ok is not None) == rule
    assert got == (parts[:-1] if terminated else parts)
    if ok is not None:
        assert ok == Checked(data, len(parts) - 1, 400)
