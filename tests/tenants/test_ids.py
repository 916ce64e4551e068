"""Tenant ids follow Loki's rule: 1..150 bytes of 0-9 a-z A-Z ! - _ . * ' ( ), never . or .."""

from __future__ import annotations

import pytest

from zlog.protocol.errors import KINDS
from zlog.tenants import ids

VALID = ["a", "fake", "default", "team-1", "A_b.c", "x" * 150, "!-_.*'()", "...", ".a", "a..b", "0"]
INVALID = [
    "", ".", "..", "x" * 151, "a/b", "../etc", "a\\b", "a b", " a", "a\n", "a\r\nX-Evil: 1", "a\x00",
    "é", "a|b", "a:b", "a;b", "a,b", "a%2F", "a@b", "a#b", "a$b", "\u202e", "a\tb", "~",
]


@pytest.mark.parametrize("tenant", VALID)
def test_valid_ids_pass(tenant: str) -> None:
    assert ids.is_valid(tenant)
    assert ids.validate(tenant) == tenant
    assert ids.from_header(tenant) == tenant


@pytest.mark.parametrize("tenant", INVALID)
def test_invalid_ids_are_refused_by_name(tenant: str) -> None:
    assert not ids.is_valid(tenant)
    with pytest.raises(ids.InvalidTenant) as info:
        ids.validate(tenant)
    assert info.value.code == "INVALID_TENANT" and info.value.http_status == 400
    assert "INVALID_TENANT" in KINDS
    # The message is one printable ASCII line and never the whole of a long value.
    assert info.value.message.isascii() and "\n" not in info.value.message and "\r" not in info.value.message
    assert len(info.value.message) < 200


def test_non_strings_are_refused() -> None:
    for value in (None, 1, b"a", ["a"]):
        assert not ids.is_valid(value)
        with pytest.raises(ids.InvalidTenant):
            ids.validate(value)


def test_header_absent_means_the_default_tenant() -> None:
    assert ids.from_header(None) == ids.DEFAULT_TENANT == "default"
    assert ids.from_header(None, "acme") == "acme"
    with pytest.raises(ids.InvalidTenant):
        ids.from_header("")  # present but empty is a mistake to report, not the default


def test_a_valid_id_is_one_safe_path_component(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for tenant in VALID:
        target = (tmp_path / tenant).resolve()
        assert target.parent == tmp_path.resolve()
