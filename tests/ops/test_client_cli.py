"""``zlog produce`` against a real cluster: text and JSON lines stored, bad lines reported, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests._cluster import Cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("produce")) as c:  # stops its processes whatever happens
        yield c


def produce(cluster: Cluster, stdin: bytes, *flags: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "zlog", "produce", *flags], input=stdin, env=cluster.env,
                          cwd=cluster.root, capture_output=True, timeout=25)


def records_of(cluster: Cluster, service: str) -> list[dict[str, object]]:
    return [r for r in cluster.stored_records() if r["service"] == service]


def test_text_lines_become_records_of_the_flags(cluster: Cluster) -> None:
    out = produce(cluster, b"first line\n\nsecond line\r\nthird, no newline", "--service", "cli_text",
                  "--level", "WARN", "--label", "env=test", "--label", "team=a=b")
    assert out.returncode == 0, out.stderr.decode()
    recs = records_of(cluster, "cli_text")
    assert [r["message"] for r in recs] == ["first line", "second line", "third, no newline"]
    assert all(r["level"] == "WARN" and r["labels"] == {"env": "test", "team": "a=b"} for r in recs)
    assert b"3 records stored, 0 failed" in out.stderr


def test_json_objects_keep_their_fields_and_get_the_flag_defaults(cluster: Cluster) -> None:
    lines = [
        {"service": "cli_json", "message": "own level", "level": "ERROR", "timestamp": 123, "labels": {"k": "own"}},
        {"message": "service from the flag"},
    ]
    stdin = b"\n".join(json.dumps(x).encode() for x in lines) + b"\n"
    out = produce(cluster, stdin, "--service", "cli_json", "--label", "k=flag", "--label", "x=1")
    assert out.returncode == 0, out.stderr.decode()
    recs = records_of(cluster, "cli_json")
    assert recs[0]["level"] == "ERROR" and recs[0]["timestamp"] == 123
    assert recs[0]["labels"] == {"k": "own", "x": "1"}  # the record's own label wins
    assert recs[1]["level"] == "INFO" and recs[1]["labels"] == {"k": "flag", "x": "1"}


def test_a_bad_line_is_reported_skipped_and_fails_the_exit_code(cluster: Cluster) -> None:
    stdin = b'good one\n{"service": "cli_bad", "message": ""}\n{"service": "cli_bad", "message": "ok", "timestamp": -1}\ngood two\n'
    out = produce(cluster, stdin, "--service", "cli_bad")
    assert out.returncode == 1
    err = out.stderr.decode()
    assert "line 2: invalid record (message: required" in err
    assert "line 3: invalid record (timestamp" in err
    assert "2 records stored, 2 failed" in err
    assert [r["message"] for r in records_of(cluster, "cli_bad")] == ["good one", "good two"]


def test_text_without_a_service_is_a_usage_error(cluster: Cluster) -> None:
    out = produce(cluster, b"orphan line\n")
    assert out.returncode == 2
    assert b"need --service" in out.stderr


def test_a_large_pipe_is_stored_exactly_once_in_order(cluster: Cluster) -> None:
    n = 20_000
    stdin = b"".join(b"bulk %06d\n" % i for i in range(n))
    out = produce(cluster, stdin, "--service", "cli_bulk")
    assert out.returncode == 0, out.stderr.decode()
    msgs = [r["message"] for r in records_of(cluster, "cli_bulk")]
    assert msgs == [f"bulk {i:06d}" for i in range(n)]
