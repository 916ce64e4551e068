"""Syslog parsing and TCP framing without I/O; fuzzed."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zlog.syslog.parse import Framer, SyslogError, parse

NOW = calendar.timegm((2026, 12, 4, 20, 0, 0, 0, 0, 0)) * 1000


def test_rfc5424_with_structured_data() -> None:
    msg = (b'<165>1 2026-12-04T18:00:00.123456+05:30 host1 app 42 ID47 [exampleSDID@32473 iut="3" '
           b'eventSource="Appl\\"ic\\]ation"][other k="v"] \xef\xbb\xbfAn application event')
    rec = parse(msg, now_ms=NOW)
    assert rec["timestamp"] == calendar.timegm((2026, 12, 4, 12, 30, 0, 0, 0, 0)) * 1000 + 123
    assert (rec["service"], rec["level"], rec["message"]) == ("app", "INFO", "An application event")
    assert rec["labels"] == {"host": "host1", "facility": "local4", "source": "syslog"}
    assert rec["metadata"] == {"procid": "42", "msgid": "ID47", "exampleSDID@32473.iut": "3",
                               "exampleSDID@32473.eventSource": 'Appl"ic]ation', "other.k": "v"}


def test_rfc5424_nil_values() -> None:
    rec = parse(b"<11>1 - - - - - - just text", now_ms=NOW)
    assert (rec["timestamp"], rec["service"], rec["level"], rec["message"]) == (NOW, "syslog", "ERROR", "just text")
    assert rec["labels"] == {"facility": "user", "source": "syslog"} and rec["metadata"] == {}


def test_rfc3164_in_the_receivers_zone_and_year() -> None:
    plus_one_hour = lambda f: calendar.timegm((*f, 0, 0, 0)) - 3600  # noqa: E731  a UTC+1 receiver
    rec = parse(b"<13>Dec  4 21:00:01 myhost sshd[123]: Accepted key", now_ms=NOW, local_to_utc=plus_one_hour)
    assert rec["timestamp"] == calendar.timegm((2026, 12, 4, 20, 0, 1, 0, 0, 0)) * 1000
    assert (rec["service"], rec["message"], rec["level"]) == ("sshd", "Accepted key", "INFO")
    assert rec["labels"]["host"] == "myhost" and rec["metadata"] == {"procid": "123"}
    jan = calendar.timegm((2027, 1, 1, 0, 10, 0, 0, 0, 0)) * 1000
    utc = lambda f: calendar.timegm((*f, 0, 0, 0))  # noqa: E731
    rec = parse(b"<13>Dec 31 23:59:59 h app: late", now_ms=jan, local_to_utc=utc)
    assert rec["timestamp"] == calendar.timegm((2026, 12, 31, 23, 59, 59, 0, 0, 0)) * 1000


@pytest.mark.parametrize(("data", "reason"), [
    (b"no pri", "no_pri"), (b"<192>1 - - - - - - x", "bad_pri"), (b"<13>\xff\xfe", "invalid_utf8"),
    (b"<13>1 - - - - - [unterminated x", "bad_structured_data"), (b"<13>1 yesterday h a - - - x", "bad_timestamp"),
    (b"<13>1 - - - - - x", "bad_structured_data"), (b"<13>", "empty"),
])
def test_unreadable_messages_are_named(data: bytes, reason: str) -> None:
    with pytest.raises(SyslogError) as err:
        parse(data, now_ms=NOW)
    assert err.value.reason == reason


def test_framer_octet_counting_lf_and_oversize() -> None:
    f = Framer(max_bytes=10)
    assert f.feed(b"5 hello3 abc") == [b"hello", b"abc"]
    assert f.feed(b"line one\r\nli") == [b"line one"]
    assert f.feed(b"ne two\n") == [b"line two"]
    assert f.feed(b"20 " + b"x" * 15) == [] and f.dropped == 1
    assert f.feed(b"y" * 5 + b"2 ok") == [b"ok"]
    assert f.feed(b"z" * 30) == [] and f.feed(b"zz\nfine\n") == [b"fine"] and f.dropped == 2
    assert f.feed(b"tail") == [] and f.close() == b"tail"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=10))
def test_framer_fuzz_holds_bounded_and_never_crashes(chunks: list[bytes]) -> None:
    f = Framer(max_bytes=16)
    for c in chunks:
        for msg in f.feed(c):
            assert len(msg) <= 16
            try:
                parse(msg, now_ms=NOW)
            except SyslogError:
                pass
        assert len(f.buf) <= 16 + 12 + 30
