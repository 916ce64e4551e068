r"""The read path's filter spec, its codecs and the line predicate (pure).

A ``Filter`` says which stored records a reader wants: services, levels, a message substring
(``contains``), a message regex, label equality, a time range ``[since_ms, until_ms]``, and
exclusions (``exclude``: a record whose service, level or a label equals an excluded value is
left out; over HTTP ``-service=``, ``-level=``, ``-label.<k>=``), and words (``q=``: every word
must be a word of the message, service, level or a label value, as ``zlog.storage.tokens``
splits them: runs of ``\w``, case-insensitive).
It is parsed from HTTP parameters (``zlog.read.params``), carried to workers in a SEARCH body
(``Filter.to_body`` / ``Filter.from_body``), and turned into a predicate on raw line bytes
(``compile_filter``). Paging (cursors and the merge of partitions) is ``zlog.read.paging``.

Invariants:
- Pure: no sockets, files or clocks; "now" is an argument wherever a relative time is parsed.
- Every parse error is ``BadParameter`` naming the offending parameter (HTTP 400).
- The predicate is exact: it returns True iff the record satisfies every condition. Cheap bytes
  tests (``needle in line``) only ever reject lines that cannot match; a line passing them is
  parsed with orjson and checked field by field. The bytes tests rely on lines being encoded by
  orjson (``zlog.ingest.records`` is the only encoder), whose escaping is per character, so the escaped
  needle is a substring of the escaped message whenever the needle is a substring of the message.
- Level comparison ignores case (excluded levels too); service, label and ``contains``
  comparisons are exact. A record without an excluded label is not excluded by it.
- ``needles_of`` names only what every matching record contains, so an index that skips blocks
  without them (sealed segments) never changes an answer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import regex

from zlog.protocol.errors import BadParameter
from zlog.security.regexes import compile_bounded
from zlog.storage.tokens import Needles, needles, record_words
from zlog.storage.tokens import words as words_of

DEFAULT_LIMIT = 100
MAX_LIMIT = 5000
MAX_REGEX_CHARS = 512
MAX_CONTAINS_CHARS = 1024
MAX_VALUES = 64  # services, levels, labels or exclusions in one filter
EXCLUDE_FIELDS = ("service", "level")  # and "label.<k>"

Predicate = Callable[[bytes], bool]

REGEX_TIMEOUT_S = 0.05


@dataclass(frozen=True, slots=True)
class Filter:
    services: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    contains: str | None = None
    regex: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    since_ms: int | None = None
    until_ms: int | None = None
    # (field, value) pairs, sorted: field is "service", "level" or "label.<k>".
    exclude: tuple[tuple[str, str], ...] = ()
    words: tuple[str, ...] = ()  # q=, already split by zlog.storage.tokens.words

    def is_empty(self) -> bool:
        return self == _EMPTY

    def to_body(self) -> dict[str, Any]:
        """The SEARCH body form: only the conditions that are set."""
        out: dict[str, Any] = {}
        if self.services:
            out["services"] = list(self.services)
        if self.levels:
            out["levels"] = list(self.levels)
        if self.contains is not None:
            out["contains"] = self.contains
        if self.regex is not None:
            out["regex"] = self.regex
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.since_ms is not None:
            out["since"] = self.since_ms
        if self.until_ms is not None:
            out["until"] = self.until_ms
        if self.exclude:
            out["exclude"] = [list(pair) for pair in self.exclude]
        if self.words:
            out["words"] = list(self.words)
        return out

    @classmethod
    def from_body(cls, obj: Any) -> Filter:
        """Parse the SEARCH body form; raises ``BadParameter`` (the worker maps it to BAD_BODY)."""
        if obj is None:
            return _EMPTY
        if not isinstance(obj, dict):
            raise BadParameter("filter", "must be a map")
        unknown = set(obj) - {"services", "levels", "contains", "regex", "labels", "since", "until", "exclude",
                              "words"}
        if unknown:
            raise BadParameter("filter", f"unknown keys {sorted(unknown)}")
        services = _str_list(obj.get("services"), "services")
        levels = _str_list(obj.get("levels"), "levels")
        labels_obj = obj.get("labels") or {}
        if not isinstance(labels_obj, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels_obj.items()
        ):
            raise BadParameter("labels", "must be a map of strings")
        f = cls(
            services,
            levels,
            _opt_str(obj.get("contains"), "contains"),
            _opt_str(obj.get("regex"), "regex"),
            tuple(sorted(labels_obj.items())),
            _opt_ms(obj.get("since"), "since"),
            _opt_ms(obj.get("until"), "until"),
            _exclude_pairs(obj.get("exclude")),
            tuple(dict.fromkeys(w for text in _str_list(obj.get("words"), "words") for w in words_of(text))),
        )
        f.check()
        return f

    def check(self) -> None:
        """Limits shared by every way a filter enters the system."""
        for name, values in (("service", self.services), ("level", self.levels), ("label", self.labels),
                             ("exclude", self.exclude), ("q", self.words)):
            if len(values) > MAX_VALUES:
                raise BadParameter(name, f"at most {MAX_VALUES} values")
        if self.contains is not None and len(self.contains) > MAX_CONTAINS_CHARS:
            raise BadParameter("contains", f"at most {MAX_CONTAINS_CHARS} characters")
        if self.regex is not None:
            if len(self.regex) > MAX_REGEX_CHARS:
                raise BadParameter("regex", f"at most {MAX_REGEX_CHARS} characters")
            try:
                compile_bounded(self.regex)
            except regex.error as exc:
                raise BadParameter("regex", f"invalid regular expression: {exc}") from None
        if self.since_ms is not None and self.until_ms is not None and self.since_ms > self.until_ms:
            raise BadParameter("since", "must not be after until")
        for name, _ in self.exclude:
            if name not in EXCLUDE_FIELDS and not (name.startswith("label.") and len(name) > 6):
                raise BadParameter("-" + name, "only service, level and label.<k> can be excluded")

    def digest(self) -> str:
        """A short stable digest of the filter, bound into cursors."""
        raw = orjson.dumps(self.to_body(), option=orjson.OPT_SORT_KEYS)
        return hashlib.blake2s(raw, digest_size=6).hexdigest()


_EMPTY = Filter()


def _str_list(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadParameter(name, "must be a list of strings")
    return tuple(value)


def _exclude_pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in value
    ):
        raise BadParameter("exclude", "must be a list of [field, value] string pairs")
    return tuple(sorted({(p[0], p[1]) for p in value}))


def _opt_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadParameter(name, "must be a string")
    return value


def _opt_ms(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadParameter(name, "must be an integer of unix milliseconds")
    return value


# -- the predicate ------------------------------------------------------------------------


def _escaped(text: str) -> bytes:
    """How ``text`` appears inside a JSON string written by orjson."""
    return orjson.dumps(text)[1:-1]


def compile_filter(f: Filter) -> Predicate | None:
    """A predicate on stored line bytes, or None when the filter matches every record."""
    if f.is_empty():
        return None
    loads = orjson.loads
    required: list[bytes] = []  # every one must occur in the line
    if f.contains:
        required.append(_escaped(f.contains))
    for k, v in f.labels:
        required.append(b'"' + _escaped(k) + b'":"' + _escaped(v) + b'"')
    if len(f.services) == 1:
        required.append(b'"service":"' + _escaped(f.services[0]) + b'"')
    any_service = tuple(b'"service":"' + _escaped(s) + b'"' for s in f.services) if len(f.services) > 1 else ()
    level_bytes = (
        re.compile(b'"level":"(?i:' + b"|".join(re.escape(_escaped(lv)) for lv in f.levels) + b')"')
        if f.levels and all(lv.isascii() for lv in f.levels)
        else None  # bytes (?i) folds ASCII only; other levels are left to the exact check
    )
    services = frozenset(f.services)
    levels = frozenset(lv.lower() for lv in f.levels)
    contains = f.contains
    # The user's pattern runs inside the storage worker's loop, so it runs under the `regex`
    # engine's per-match timeout: a catastrophically backtracking pattern fails the search
    # (400) instead of stalling ingestion.
    pattern = compile_bounded(f.regex) if f.regex else None
    labels = f.labels
    since, until = f.since_ms, f.until_ms
    not_services = frozenset(v for k, v in f.exclude if k == "service")
    not_levels = frozenset(v.lower() for k, v in f.exclude if k == "level")
    not_labels = tuple((k[6:], v) for k, v in f.exclude if k.startswith("label."))
    q_words = frozenset(f.words)
    ascii_words = tuple(w.encode() for w in f.words if w.isascii())

    def predicate(line: bytes) -> bool:
        for needle in required:
            if needle not in line:
                return False
        if ascii_words:
            low = line.lower()  # an ASCII word of a field is in the lowered line (JSON keeps \w as is)
            for w in ascii_words:
                if w not in low:
                    return False
        if any_service and not any(n in line for n in any_service):
            return False
        if level_bytes is not None and level_bytes.search(line) is None:
            return False
        try:
            rec = loads(line)
        except orjson.JSONDecodeError:
            return False
        if type(rec) is not dict:
            return False
        if since is not None or until is not None:
            ts = rec.get("timestamp")
            if type(ts) is not int:
                return False
            if (since is not None and ts < since) or (until is not None and ts > until):
                return False
        if services and rec.get("service") not in services:
            return False
        if levels:
            lv = rec.get("level")
            if type(lv) is not str or lv.lower() not in levels:
                return False
        message = rec.get("message")
        if contains and (type(message) is not str or contains not in message):
            return False
        if pattern is not None:
            if type(message) is not str:
                return False
            try:
                if pattern.search(message, timeout=REGEX_TIMEOUT_S) is None:
                    return False
            except TimeoutError:
                raise BadParameter("regex", f"too expensive: one match took over {REGEX_TIMEOUT_S}s") from None
        if labels:
            got = rec.get("labels")
            if type(got) is not dict:
                return False
            for k, v in labels:
                if got.get(k) != v:
                    return False
        if not_services and rec.get("service") in not_services:
            return False
        if not_levels:
            lv = rec.get("level")
            if type(lv) is str and lv.lower() in not_levels:
                return False
        if not_labels:
            got = rec.get("labels")
            if type(got) is dict and any(got.get(k) == v for k, v in not_labels):
                return False
        return not q_words or q_words <= record_words(rec)

    return predicate


def needles_of(f: Filter) -> Needles:
    """What every record matching ``f`` holds, for block skipping: its words, the words of a
    single service or level and of label values, and the ``contains`` substring."""
    terms = list(f.words) + [v for _, v in f.labels]
    if len(f.services) == 1:
        terms.append(f.services[0])
    if len(f.levels) == 1:
        terms.append(f.levels[0])
    return needles(terms, [f.contains] if f.contains else [])
