"""Configuration: defaults < TOML < ZLOG_* environment < explicit overrides; strict keys.

Invariants:
- ``conf/zlog.toml`` holds every key with its default value.
- Unknown keys are errors; the partition assignment is a pure function of the counts.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._cluster import REPO
from zlog.config import (
    Config,
    ConfigError,
    FsyncPolicy,
    assign_partitions,
    load,
    owner_of,
)
from zlog.ops.cli import build_parser, overrides_of


def test_defaults_give_the_original_layout() -> None:
    cfg = Config()
    assert cfg.gateway.host == "127.0.0.1" and cfg.gateway.port == 8080
    assert cfg.router.front == ("tcp://127.0.0.1:5555",)
    assert cfg.router.back == ("tcp://127.0.0.1:5556",)
    assert cfg.cluster.data_dir == Path("data")
    assert cfg.cluster.partitions == 4 and cfg.cluster.workers == 2
    assert str(cfg.storage.fsync) == "always"
    assert cfg.partitions_of(0) == (0, 1) and cfg.partitions_of(1) == (2, 3)


def test_the_shipped_file_lists_every_key_with_its_default() -> None:
    import tomllib

    path = REPO / "conf" / "zlog.toml"
    data = tomllib.loads(path.read_text())
    defaults = Config()
    for f in dataclasses.fields(defaults):
        section = getattr(defaults, f.name)
        # Fields that hold sub-tables ([tenants.<id>]) are not keys of the section.
        keys = {sf.name for sf in dataclasses.fields(section) if not sf.metadata.get("subtables")}
        assert set(data[f.name]) == keys, f"[{f.name}] keys differ"
    assert load(path, env={}) == defaults


def test_toml_values_are_read(tmp_path: Path) -> None:
    path = tmp_path / "z.toml"
    path.write_text(
        '[cluster]\nnode_id = "n7"\npartitions = 8\nworkers = 4\ndata_dir = "/srv/zlog"\n'
        '[router]\nfront = ["tcp://10.0.0.1:1", "tcp://10.0.0.2:1"]\n'
        '[storage]\nfsync = "interval:250"\n'
        '[gateway]\nport = 9999\ntrusted_proxies = ["10.0.0.9"]\n'
        '[log]\nformat = "logfmt"\n'
    )
    cfg = load(path, env={})
    assert cfg.cluster.node_id == "n7"
    assert cfg.cluster.data_dir == Path("/srv/zlog")
    assert cfg.router.front == ("tcp://10.0.0.1:1", "tcp://10.0.0.2:1")
    assert cfg.storage.fsync == FsyncPolicy("interval", 250)
    assert cfg.gateway.port == 9999 and cfg.gateway.trusted_proxies == ("10.0.0.9",)
    assert cfg.log.format == "logfmt"
    assert cfg.partitions_of(3) == (6, 7)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "z.toml"
    path.write_text('[gateway]\nport = 9000\n[cluster]\ndata_dir = "from-file"\n')
    env = {
        "ZLOG_DATA_DIR": "/tmp/zdata",
        "ZLOG_HTTP_PORT": "8181",
        "ZLOG_STORAGE_FSYNC": "never",
        "ZLOG_ROUTER_FRONT": "tcp://a:1,tcp://b:2",
        "ZLOG_GATEWAY_MAX_RECORDS": "7",
        "ZLOG_TEST_SOMETHING": "ignored: not a config section",
    }
    cfg = load(path, env=env)
    assert cfg.cluster.data_dir == Path("/tmp/zdata")
    assert cfg.gateway.port == 8181
    assert str(cfg.storage.fsync) == "never"
    assert cfg.router.front == ("tcp://a:1", "tcp://b:2")
    assert cfg.gateway.max_records == 7


def test_zlog_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "z.toml"
    path.write_text('[cluster]\nnode_id = "via-env"\n')
    assert load(None, env={"ZLOG_CONFIG": str(path)}).cluster.node_id == "via-env"


def test_overrides_beat_environment() -> None:
    cfg = load(None, env={"ZLOG_CONFIG": "/dev/null", "ZLOG_HTTP_PORT": "1"}, overrides=[("gateway", "port", "2")])
    assert cfg.gateway.port == 2


def test_cli_flags_become_overrides() -> None:
    args = build_parser().parse_args(
        ["--data-dir", "/d1", "gateway", "--port", "7070", "--fsync", "interval:5", "--node-id", "x"]
    )
    got = dict(((s, k), v) for s, k, v in overrides_of(args))
    assert got == {
        ("cluster", "data_dir"): "/d1",
        ("gateway", "port"): 7070,
        ("storage", "fsync"): "interval:5",
        ("cluster", "node_id"): "x",
    }
    cfg = load(None, env={"ZLOG_CONFIG": "/dev/null"}, overrides=overrides_of(args))
    assert cfg.gateway.port == 7070 and cfg.cluster.data_dir == Path("/d1")


@pytest.mark.parametrize(
    ("text", "env", "needle"),
    [
        ("[cluster]\nnode_idd = 'x'\n", {}, "cluster.node_idd"),
        ("[clusterr]\nnode_id = 'x'\n", {}, "[clusterr]"),
        ("", {"ZLOG_GATEWAY_PORTT": "1"}, "gateway.portt"),
        ("[gateway]\nport = 'eighty'\n", {}, "gateway.port"),
        ("[gateway]\nport = true\n", {}, "gateway.port"),
        ("[storage]\nfsync = 'sometimes'\n", {}, "fsync"),
        ("[storage]\nfsync = 'interval:0'\n", {}, "fsync"),
        ("[cluster]\nworkers = 5\n", {}, "workers"),
        ("[log]\nformat = 'xml'\n", {}, "log.format"),
        ("cluster = 3\n", {}, "must be a table"),
        ("[cluster\n", {}, "cannot read config"),
    ],
)
def test_bad_configs_are_named_errors(tmp_path: Path, text: str, env: dict[str, str], needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as info:
        load(path, env=env)
    assert needle in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load(tmp_path / "absent.toml", env={})


def test_fsync_policy_text_round_trips() -> None:
    for text in ("always", "never", "interval:100"):
        assert str(FsyncPolicy.parse(text)) == text


@pytest.mark.parametrize(
    ("partitions", "workers", "expected"),
    [
        (4, 2, ((0, 1), (2, 3))),
        (4, 1, ((0, 1, 2, 3),)),
        (4, 4, ((0,), (1,), (2,), (3,))),
        (5, 2, ((0, 1, 2), (3, 4))),
        (3, 2, ((0, 1), (2,))),
    ],
)
def test_assignment_is_contiguous_and_complete(partitions: int, workers: int, expected: tuple[tuple[int, ...], ...]) -> None:
    got = assign_partitions(partitions, workers)
    assert got == expected
    assert sorted(p for parts in got for p in parts) == list(range(partitions))
    for w, parts in enumerate(got):
        assert all(owner_of(p, partitions, workers) == w for p in parts)


def test_float_keys_from_the_environment_are_numbers() -> None:
    cfg = load(None, env={"ZLOG_CONFIG": "/dev/null", "ZLOG_GATEWAY_LINGER_MS": "5"})
    assert cfg.gateway.linger_ms == 5.0 and isinstance(cfg.gateway.linger_ms, float)


# -- the zlog command turns configuration errors into exit code 2 -------------------------------


def _zlog(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "zlog", *args], capture_output=True, text=True, timeout=60,
                          env=full_env, cwd=cwd or REPO)


def test_help_lists_every_subcommand() -> None:
    out = _zlog("--help")
    assert out.returncode == 0
    for command in ("router", "storage", "gateway", "produce", "query", "tail", "status", "up"):
        assert command in out.stdout


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--config", "{tmp}/absent.toml", "status"], {}, "cannot read config"),
        (["--config", "{tmp}/bad.toml", "status"], {}, "cluster.nope"),
        (["--fsync", "sometimes", "status"], {}, "fsync"),
        (["status"], {"ZLOG_HTTP_PORT": "eighty"}, "gateway.port"),
        (["storage", "--worker-id", "9"], {}, "--worker-id"),
    ],
)
def test_config_errors_exit_2_with_the_message_and_no_traceback(
    tmp_path: Path, args: list[str], env: dict[str, str], needle: str
) -> None:
    (tmp_path / "bad.toml").write_text("[cluster]\nnope = 1\n")
    out = _zlog(*[a.replace("{tmp}", str(tmp_path)) for a in args], env={"ZLOG_CONFIG": "/dev/null", **env},
                cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr


def test_usage_errors_exit_2() -> None:
    assert _zlog("storage").returncode == 2  # --worker-id is required
    assert _zlog("no-such-command").returncode == 2


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[gateway]\nport = 80.9\n", "gateway.port"),
        ("[gateway]\nport = 99999\n", "gateway.port"),
        ('[cluster]\ndata_dir = ""\n', "cluster.data_dir"),
        ("[router]\nmetrics_port = 0\n", "router.metrics_port"),
    ],
)
def test_values_that_would_fail_later_are_refused_now(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "z.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load(path, env={})


def test_warn_is_a_log_level_as_the_logs_spell_it() -> None:
    assert load(None, env={"ZLOG_CONFIG": "/dev/null", "ZLOG_LOG_LEVEL": "warn"}).log.level == "warn"
