"""Where tenants' partitions live, and how [tenants] config is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from zlog.config import ConfigError, load
from zlog.read.query import BadParameter
from zlog.tenants.layout import on_disk, partition_dir, tenant_root
from zlog.tenants.quotas import capped, check_limit, check_range


def test_the_default_tenant_keeps_the_single_tenant_layout(tmp_path: Path) -> None:
    assert partition_dir(tmp_path, ("default", 3), "default") == tmp_path / "3"
    assert partition_dir(tmp_path, ("acme", 3), "default") == tmp_path / "tenants" / "acme" / "3"
    # whichever tenant is configured as the default owns the top-level partitions
    assert partition_dir(tmp_path, ("acme", 0), "acme") == tmp_path / "0"
    assert partition_dir(tmp_path, ("default", 0), "acme") == tmp_path / "tenants" / "default" / "0"


@pytest.mark.parametrize("bad", ["..", ".", "a/b", "", "x" * 151, "é", "a\x00b", "/etc"])
def test_a_name_that_is_not_a_tenant_id_never_becomes_a_path(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        tenant_root(tmp_path, bad, "default")
    with pytest.raises(ValueError):
        partition_dir(tmp_path, (bad, 0), "default")


def test_partitions_found_on_disk_are_the_owned_ones_of_valid_tenants(tmp_path: Path) -> None:
    for rel in ("0", "1", "tenants/acme/1", "tenants/acme/2", "tenants/globex/0", "tenants/bad name/1"):
        (tmp_path / rel).mkdir(parents=True)
    (tmp_path / "tenants" / "file").write_text("not a tenant")
    assert on_disk(tmp_path, (0, 1), "default") == [("default", 0), ("default", 1), ("acme", 1), ("globex", 0)]
    assert on_disk(tmp_path / "nothing", (2,), "default") == [("default", 2)]


def test_declared_tenants_override_only_what_they_name(tmp_path: Path) -> None:
    path = tmp_path / "z.toml"
    path.write_text("[tenants]\nrecords_per_s = 100\nretention_ms = 9\n"
                    "[tenants.acme]\nrecords_per_s = 5\n[tenants.\"o'brien\"]\nmax_services = 3\n")
    cfg = load(path, env={"ZLOG_TENANTS_RETENTION_MS": "77"})
    t = cfg.tenants
    assert t.names() == ("acme", "o'brien")
    assert t.limits("acme").records_per_s == 5 and t.limits("acme").retention_ms == 77
    assert t.limits("o'brien").max_services == 3 and t.limits("o'brien").records_per_s == 100
    assert t.limits("anyone").records_per_s == 100


@pytest.mark.parametrize("text", [
    "[tenants.\"a/b\"]\nrecords_per_s = 1\n",
    "[tenants.acme]\nno_such_limit = 1\n",
    "[tenants.acme]\nrecords_per_s = -1\n",
    "[tenants]\nburst_s = 0\n",
    "[tenants]\ndeclared = []\n",
])
def test_bad_tenant_config_is_an_error_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "z.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="tenants"):
        load(path, env={})


def test_read_limits_refuse_instead_of_cutting(tmp_path: Path) -> None:
    path = tmp_path / "z.toml"
    path.write_text("[tenants]\nmax_query_range_ms = 1000\nmax_query_records = 50\n")
    lim = load(path, env={}).tenants.limits("x")
    check_range(lim, 9_000, 10_000, 10_000)
    check_range(lim, 9_500, None, 10_000)
    with pytest.raises(BadParameter, match="max_query_range_ms"):
        check_range(lim, 8_000, 10_000, 10_000)
    with pytest.raises(BadParameter, match="since"):
        check_range(lim, None, 10_000, 10_000)
    check_limit(lim, 50)
    with pytest.raises(BadParameter, match="max_query_records"):
        check_limit(lim, 51)
    assert capped(lim, 500) == 50 and capped(load(None, env={}).tenants, 500) == 500
