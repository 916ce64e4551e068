"""Tokens of a stored record and the per-block token filter of a sealed segment (pure).

Words: maximal runs of Unicode letters, digits and ``_`` (``\\w+``) of the lower-cased text.
A record's words are those of its message, service, level and label values; ``q=`` matches a
record iff every word of the query is one of them. Substrings: ``contains=`` is a case-sensitive
substring of the message; every character trigram of the lower-cased needle is then a trigram
of the lower-cased message (``str.lower`` maps each character on its own, so lowering keeps
substrings), which is what the filter tests.

The filter (a bit-sliced Bloom filter, as signature files do): one row of ``nblocks`` bits per
filter bit; key ``x`` of block ``b`` sets bit ``b`` of rows ``h_i(x) mod m``, ``i < k``. A query
ANDs the ``k`` rows of each of its keys: the result has a bit set for every block that may hold
all keys, in one pass over a few rows per segment instead of one test per block.

Invariants:
- No false negatives: a block holding a record that matches has its bit set in the result.
  A block with more than ``max_keys`` distinct keys is marked as holding every key.
- Keys are namespaced (``w`` words, ``t`` trigrams) and hashed with xxh3_64, so the filter
  depends only on the block's text: a rebuild reproduces it byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson
import xxhash

_WORD = re.compile(r"\w+")
BITS_PER_KEY = 10
HASHES = 7
MAX_KEYS = 65_536


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def trigrams(text: str) -> set[str]:
    low = text.lower()
    return {low[i:i + 3] for i in range(len(low) - 2)}


def record_fields(rec: dict[str, object]) -> tuple[str | None, list[str]]:
    """(message, the other indexed texts: service, level, label values) of a parsed record."""
    message = rec.get("message")
    others = [v for v in (rec.get("service"), rec.get("level")) if type(v) is str]
    labels = rec.get("labels")
    if type(labels) is dict:
        others += [v for v in labels.values() if type(v) is str]
    return (message if type(message) is str else None), others


def record_words(rec: dict[str, object]) -> set[str]:
    message, others = record_fields(rec)
    out = set(words(message)) if message is not None else set()
    for text in others:
        out.update(words(text))
    return out


def _hash(key: bytes) -> int:
    return xxhash.xxh3_64_intdigest(key)


def block_keys(lines: Iterable[bytes], cache: dict[tuple[str, bool], frozenset[int]] | None = None,
               ) -> tuple[set[int], int, int]:
    """The hashed keys of one block of stored lines and the block's (min, max) ``timestamp``
    ((-1, -1) when none); lines that are not JSON objects add nothing. ``cache`` (text -> keys,
    shared by the blocks of a segment) spares re-hashing texts that repeat, as log texts do."""
    messages: set[str] = set()
    others: set[str] = set()
    stamps: list[int] = []
    loads, add_message, add_other = orjson.loads, messages.add, others.add
    for line in lines:  # the hot loop of sealing: one parse, a few dict lookups per line
        try:
            rec = loads(line)
        except orjson.JSONDecodeError:
            continue
        if type(rec) is not dict:
            continue
        ts = rec.get("timestamp")
        if type(ts) is int:
            stamps.append(ts)
        text = rec.get("message")
        if type(text) is str:
            add_message(text)
        for text in (rec.get("service"), rec.get("level")):
            if type(text) is str:
                add_other(text)
        labels = rec.get("labels")
        if type(labels) is dict:
            others.update(v for v in labels.values() if type(v) is str)
    lo, hi = (min(stamps), max(stamps)) if stamps else (-1, -1)
    keys: set[int] = set()
    memo = {} if cache is None else cache
    for texts, is_message in ((messages, True), (others - messages, False)):
        for text in texts:
            got = memo.get((text, is_message))
            if got is None:
                got = frozenset(_text_keys(text, is_message))
                if len(memo) < 100_000:
                    memo[(text, is_message)] = got
            keys |= got
    return keys, lo, hi


def _text_keys(text: str, is_message: bool) -> set[int]:
    out = {_hash(b"w" + w.encode()) for w in words(text)}
    if is_message:
        out.update(_hash(b"t" + t.encode()) for t in trigrams(text))
    return out


@dataclass(frozen=True, slots=True)
class Needles:
    """What a record must contain for a search to match: words (any indexed field) and message
    substrings. Empty: the index cannot help (every block is a candidate)."""

    words: tuple[str, ...] = ()
    substrings: tuple[str, ...] = ()

    def keys(self) -> list[int]:
        out = {_hash(b"w" + w.encode()) for w in self.words}
        for s in self.substrings:
            out.update(_hash(b"t" + t.encode()) for t in trigrams(s))
        return sorted(out)

    def __bool__(self) -> bool:
        return bool(self.keys())

    def may_be_in(self, data: bytes) -> bool:
        """False only when some needle occurs nowhere in ``data`` (stored lines): a substring as
        orjson escapes it, an ASCII word in the lower-cased bytes (JSON keeps word characters as they are)."""
        for s in self.substrings:
            if orjson.dumps(s)[1:-1] not in data:
                return False
        ascii_words = [w.encode() for w in self.words if w.isascii()]
        if ascii_words:
            low = data.lower()
            for w in ascii_words:
                if w not in low:
                    return False
        return True


def needles(words_: Sequence[str] = (), substrings: Sequence[str] = ()) -> Needles:
    """The needles of a search: ``words_`` each tokenized like the index (``q=`` terms), and
    ``substrings`` that must occur in the message (``contains=``, LogQL ``|=`` line filters)."""
    ws: list[str] = []
    for w in words_:
        ws += words(w)
    return Needles(tuple(dict.fromkeys(ws)), tuple(s for s in substrings if len(s) >= 3))


def filter_size(keys_per_block: Sequence[int]) -> int:
    """Bits per row set ``m`` for blocks with these key counts (saturated blocks excluded)."""
    most = max([n for n in keys_per_block if n <= MAX_KEYS] or [1])
    return max(64, most * BITS_PER_KEY)


def _rows(key: int, m: int) -> list[int]:
    h1, h2 = key & 0xFFFFFFFF, (key >> 32) | 1
    return [(h1 + i * h2) % m for i in range(HASHES)]


def build_filter(blocks: Sequence[set[int]], m: int) -> bytes:
    """The bit-sliced filter of ``blocks`` (their hashed keys): ``m`` rows of ceil(n/8) bytes.
    Keys repeat across blocks, so each key's blocks are gathered first (one bitmap per key) and
    OR-ed into its rows once."""
    rb = (len(blocks) + 7) // 8
    per_key: dict[int, int] = {}
    saturated = 0
    for b, keys in enumerate(blocks):
        bit = 1 << b
        if len(keys) > MAX_KEYS:
            saturated |= bit
            continue
        get = per_key.get
        for key in keys:
            per_key[key] = get(key, 0) | bit
    rows = [saturated] * m
    for key, bitmap in per_key.items():
        for r in _rows(key, m):
            rows[r] |= bitmap
    return b"".join(r.to_bytes(rb, "little") for r in rows)


def candidates(filt: bytes | memoryview, m: int, nblocks: int, keys: Sequence[int]) -> int:
    """A bitmap (bit b = block b) of the blocks that may hold every key."""
    result = (1 << nblocks) - 1
    if not keys or m == 0:
        return result
    rb = (nblocks + 7) // 8
    frm = int.from_bytes
    for key in keys:
        for r in _rows(key, m):
            result &= frm(filt[r * rb:(r + 1) * rb], "little")
            if not result:
                return 0
    return result
