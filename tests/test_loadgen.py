"""The load generator reproduces the original's distribution; its pure parts are exact.

Invariants:
- ``generate`` is deterministic for a seed and matches the original's distribution: services
  uniform, INFO half of the levels, 30% labelled, 96 messages, steps of 50..499 ms.
"""

from __future__ import annotations

import http.server
import importlib.util
import io
import itertools
import json
import os
import random
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from tests._cluster import REPO, free_port, up_config
from tests.conftest import ProcessGroup
from zlog.ops.cluster import wait_ready


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("loadgen", REPO / "tools" / "loadgen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["loadgen"] = module
    spec.loader.exec_module(module)
    return module


loadgen = _load()
N = 20_000


@pytest.fixture(scope="module")
def records() -> list[dict[str, object]]:
    out: list[dict[str, object]] = loadgen.generate(random.Random(1234), 1_795_675_988_031, N)
    return out


def test_deterministic_for_a_seed() -> None:
    a = loadgen.generate(random.Random(7), 1000, 50)
    b = loadgen.generate(random.Random(7), 1000, 50)
    assert a == b and a != loadgen.generate(random.Random(8), 1000, 50)


def test_record_shape_is_the_original_body(records: list[dict[str, object]]) -> None:
    for r in records[:500]:
        assert list(r)[:4] == ["timestamp", "service", "level", "message"]
        assert set(r) <= {"timestamp", "service", "level", "message", "labels"}


def test_services_are_uniform(records: list[dict[str, object]]) -> None:
    counts = Counter(r["service"] for r in records)
    assert set(counts) == set(loadgen.SERVICES)
    for c in counts.values():
        assert abs(c / N - 0.25) < 0.02


def test_levels_are_info_weighted(records: list[dict[str, object]]) -> None:
    counts = Counter(r["level"] for r in records)
    assert set(counts) == {"DEBUG", "INFO", "WARN", "ERROR"}
    assert abs(counts["INFO"] / N - 0.5) < 0.02
    for level in ("DEBUG", "WARN", "ERROR"):
        assert abs(counts[level] / N - 1 / 6) < 0.02


def test_thirty_percent_carry_their_services_labels(records: list[dict[str, object]]) -> None:
    labelled = [r for r in records if "labels" in r]
    assert abs(len(labelled) / N - 0.3) < 0.02
    for r in labelled:
        spec = loadgen.LABELS[r["service"]]
        labels = r["labels"]
        assert isinstance(labels, dict) and set(labels) == set(spec)
        assert all(labels[k] in spec[k] for k in spec)
    values = Counter(r["labels"]["duration_minutes"] for r in labelled if r["service"] == "focus_allocator")
    assert set(values) == {"25", "50", "90", "120"}


def test_ninety_six_distinct_messages_each_with_its_service(records: list[dict[str, object]]) -> None:
    all_messages = [m for ms in loadgen.MESSAGES.values() for m in ms]
    assert len(all_messages) == 96 and len(set(all_messages)) == 96
    assert all(len(ms) == 24 for ms in loadgen.MESSAGES.values())
    assert {r["message"] for r in records} == set(all_messages)
    for r in records:
        assert r["message"] in loadgen.MESSAGES[r["service"]]
    for example in ("focus session started", "calendar event created",
                    "user login failed - invalid credentials", "email sent successfully"):
        assert example in all_messages


def test_timestamps_start_now_and_step_50_to_499(records: list[dict[str, object]]) -> None:
    ts = [int(r["timestamp"]) for r in records]  # type: ignore[call-overload]
    assert ts[0] == 1_795_675_988_031
    steps = [b - a for a, b in itertools.pairwise(ts)]
    assert min(steps) == 50 and max(steps) == 499


def test_a_stream_keeps_advancing_across_batches_and_tags_uniquely() -> None:
    stream = loadgen.Stream(random.Random(3), 5000, tag="run")
    batches = [stream.batch(10) for _ in range(5)]
    flat = [r for b in batches for r in b]
    ts = [r["timestamp"] for r in flat]
    assert all(50 <= b - a <= 499 for a, b in itertools.pairwise(ts))
    seqs = [r["labels"]["zlog_seq"] for r in flat]
    assert seqs == [f"run-{i}" for i in range(50)]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 50) == 50.0
    assert loadgen.percentile(values, 99) == 99.0
    assert loadgen.percentile(values, 100) == 100.0
    assert loadgen.percentile([], 99) == 0.0
    assert loadgen.percentile([3.0], 50) == 3.0


def test_ack_log_lines_identify_each_record() -> None:
    out = io.BytesIO()
    recs = loadgen.Stream(random.Random(1), 0, tag="x").batch(3)
    loadgen.AckLog(out).write(recs, [(1, 10), (1, 11), (2, 0)])
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x["seq"] for x in lines] == ["x-0", "x-1", "x-2"]
    assert [(x["partition"], x["offset"]) for x in lines] == [(1, 10), (1, 11), (2, 0)]


def test_defaults_are_the_originals() -> None:
    args = loadgen.build_parser().parse_args([])
    assert (args.url, args.batch, args.total, args.delay) == ("http://localhost:8080/v1/logs", 10, 100, 100)
    assert args.concurrency == 1 and not args.retry


def test_failed_batches_are_counted_and_the_exit_code_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    code = loadgen.main(["--url", f"http://127.0.0.1:{port}/v1/logs", "--total", "25", "--delay", "0", "--json"])
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert code == 1
    assert (summary["sent"], summary["batches"], summary["failed_batches"], summary["acknowledged"]) == (25, 3, 3, 0)
    assert sorted(line.split(" failed:")[0] for line in captured.err.splitlines()) == ["batch 1", "batch 2", "batch 3"]


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers 429 + Retry-After to every other request, 200 {"received": N} otherwise."""

    calls = 0
    bodies: list[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls += 1
        if type(self).calls % 2:
            self.send_response(429)
            self.send_header("Retry-After", "0")
            payload = b'{"error":"RATE_LIMITED"}'
        else:
            records = json.loads(body)
            type(self).bodies.append(records)
            self.send_response(200)
            payload = json.dumps({"received": len(records)}).encode()
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("retry", [False, True])
def test_retry_after_is_honoured_only_with_retry(retry: bool, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    _Flaky.calls, _Flaky.bodies = 0, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    acks = tmp_path / "acks.jsonl"
    try:
        argv = ["--url", f"http://127.0.0.1:{server.server_port}/v1/logs", "--total", "40", "--delay", "0",
                "--json", "--tag", "t", "--record-acks", str(acks), *(["--retry"] if retry else [])]
        code = loadgen.main(argv)
    finally:
        server.shutdown()
        server.server_close()
    summary = json.loads(capsys.readouterr().out)
    stored = [r["labels"]["zlog_seq"] for b in _Flaky.bodies for r in b]
    acked = [json.loads(line)["seq"] for line in acks.read_text().splitlines()]
    assert acked == stored  # exactly the acknowledged records, in order
    if retry:
        assert code == 0 and summary["retries"] == 4 and summary["failed_batches"] == 0
        assert summary["acknowledged"] == 40 and stored == [f"t-{i}" for i in range(40)]
    else:
        assert code == 1 and summary["retries"] == 0 and summary["failed_batches"] == 2
        assert summary["acknowledged"] == 20


# -- against the cluster exactly as `make run` starts it ---------------------------------------


@pytest.mark.cluster
def test_the_load_generator_against_zlog_up_loses_nothing(process_group: ProcessGroup, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg = up_config(tmp_path, gateway_processes=2)
    data, url = cfg.data_dir, cfg.url
    up = process_group.start("up", "--config", str(cfg.path), "up")
    process_group.wait_for(lambda: wait_ready(url, 1.0), timeout=60, what="zlog up to be ready")
    process_group.wait_for(lambda: "zlog is up (ready)" in up.output(), timeout=10, what="the summary")

    def states() -> dict[str, str]:
        ctl = subprocess.run(
            [str(Path(sys.executable).parent / "supervisorctl"), "-c", str(REPO / "conf" / "supervisord.conf"),
             "status"],
            env={**os.environ, "ZLOG_DATA_DIR": str(data)}, capture_output=True, text=True, timeout=30,
        )
        return dict(line.split()[:2] for line in ctl.stdout.splitlines() if line.strip())

    programs = ("router:router-0", "storage:storage-0", "storage:storage-1", "gateway:gateway-0", "gateway:gateway-1")
    # RUNNING once a program has stayed up for startsecs; ready may come before that.
    process_group.wait_for(lambda: states() == dict.fromkeys(programs, "RUNNING"), timeout=30,
                           what="every program RUNNING")

    acks = tmp_path / "acks.jsonl"
    code = loadgen.main(["--url", f"{url}/v1/logs", "--delay", "0", "--json", "--tag", "up",
                         "--record-acks", str(acks)])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["failed_batches"] == 0 and summary["acknowledged"] == 100

    stored = Counter(
        json.loads(line)["labels"]["zlog_seq"]
        for segment in data.glob("[0-9]*/*.jsonl")
        for line in segment.read_bytes().splitlines()
    )
    acked = [json.loads(line)["seq"] for line in acks.read_text().splitlines()]
    assert sorted(acked) == sorted(f"up-{i}" for i in range(100))
    assert stored == Counter(acked)  # every acknowledged record on disk exactly once

    assert process_group.stop("up", timeout=40) == 0
    log = (data / "logs" / "supervisord.log").read_text()
    for program in ("router-0", "storage-0", "storage-1", "gateway-0", "gateway-1"):
        assert f"stopped: {program} (exit status 0)" in log
