"""``zlog up`` runs the syslog listener exactly when an address is configured."""

from __future__ import annotations

from pathlib import Path

from tests._cluster import REPO
from zlog.config import load
from zlog.ops.cluster import place_extra_programs
from zlog.syslog.listener import split_address


def test_zlog_up_places_the_syslog_program_only_when_an_address_is_set(tmp_path: Path) -> None:
    conf = REPO / "conf" / "supervisord.conf"
    target = tmp_path / "supervisord.d" / "syslog.conf"
    place_extra_programs(load(None, env={}), tmp_path, conf)
    assert not target.exists()
    place_extra_programs(load(None, env={"ZLOG_SYSLOG_UDP": "127.0.0.1:1514"}), tmp_path, conf)
    text = target.read_text()
    assert "[program:syslog]" in text and "%(ENV_ZLOG_BIN)s syslog" in text
    place_extra_programs(load(None, env={}), tmp_path, conf)
    assert not target.exists()


def test_addresses() -> None:
    assert split_address("0.0.0.0:1514") == ("0.0.0.0", 1514)
    assert split_address("[::1]:514") == ("::1", 514)
    for bad in ("1514", "host:", ":514", "host:port"):
        try:
            split_address(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} accepted")


def test_a_bad_listen_address_is_a_config_error() -> None:
    import pytest

    from zlog.config import ConfigError

    with pytest.raises(ConfigError, match=r"syslog\.tcp"):
        load(None, env={"ZLOG_SYSLOG_TCP": "1514"})
