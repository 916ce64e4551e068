"""Shared test fixtures: free ports and real subprocesses that always get cleaned up.

Invariants:
- Ports are checked free at run time (``tests._cluster.free_ports``), never a hard-coded list.
- ``ProcessGroup`` starts real processes (``sys.executable -m zlog ...`` by default), each in its
  own process group, keeps each one's stdout+stderr in a file under ``tmp_path``, waits for
  conditions by polling with a deadline (never a bare sleep), and always tears every process
  down: SIGCONT (a stopped process cannot act on SIGTERM), SIGTERM, a bounded wait, SIGKILL, and
  finally SIGKILL to whatever is left in its process group, even when the test fails.
- When a test fails, the captured output of its processes is printed in the failure report.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests._cluster import REPO


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self, tail: int = 8000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-tail:]


class ProcessGroup:
    """Real subprocesses for one test, torn down whatever happens.

    Use through the ``process_group`` fixture::

        def test_router_starts(process_group):
            port = tests._cluster.free_port()
            router = process_group.start("router", "router", env={"ZLOG_ROUTER_FRONT": f"tcp://127.0.0.1:{port}"})
            process_group.wait_for(lambda: "router started" in router.output(), what="router start")

    - ``start(name, *args)`` runs ``python -m zlog *args`` (``argv=[...]`` runs anything else),
      with ``cwd`` = the test's tmp dir, the repo on ``PYTHONPATH``, output in ``<tmp>/<name>.log``.
    - ``wait_for(cond)`` polls ``cond`` with a deadline; it fails early, with the process output,
      if any process of the group has exited unexpectedly (pass ``allow_exit=True`` to permit it).
    - ``stop(name)`` sends SIGTERM and waits; ``kill(name)`` sends SIGKILL; ``stop_all()`` runs at
      teardown in any case.
    - ``logs()`` is every process's output, printed automatically when the test fails.
    """

    def __init__(self, root: Path, base_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.procs: dict[str, ManagedProcess] = {}
        self.base_env = dict(os.environ)
        self.base_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), self.base_env.get("PYTHONPATH", "")) if p
        )
        self.base_env["PYTHONUNBUFFERED"] = "1"
        if base_env:
            self.base_env.update(base_env)
        self.expected_exits: set[str] = set()

    def start(
        self,
        name: str,
        *args: str,
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        if name in self.procs and self.procs[name].alive():
            raise RuntimeError(f"process {name!r} is already running")
        cmd = argv if argv is not None else [sys.executable, "-m", "zlog", *args]
        log_path = self.root / f"{name}.log"
        full_env = dict(self.base_env)
        if env:
            full_env.update(env)
        with log_path.open("ab") as log:
            # Its own process group, so teardown also reaches anything it started.
            popen = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=full_env, cwd=cwd or self.root, start_new_session=True,
            )
        proc = ManagedProcess(name, cmd, log_path, popen)
        self.procs[name] = proc
        self.expected_exits.discard(name)
        return proc

    def __getitem__(self, name: str) -> ManagedProcess:
        return self.procs[name]

    def wait_for(
        self, cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition", allow_exit: bool = False
    ) -> Any:
        def check() -> Any:
            if not allow_exit:
                for p in self.procs.values():
                    if p.name not in self.expected_exits and not p.alive():
                        raise ProcessExited(f"{p.name} exited with {p.popen.returncode}:\n{p.output()}")
            return cond()

        deadline = time.monotonic() + timeout
        while True:
            try:
                value = check()
                if value:
                    return value
            except ProcessExited:
                raise
            except Exception:
                if time.monotonic() >= deadline:
                    raise
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}\n{self.logs()}")
            time.sleep(0.05)

    def signal(self, name: str, sig: int) -> None:
        p = self.procs[name]
        if p.alive():
            p.popen.send_signal(sig)

    def stop(self, name: str, timeout: float = 15.0) -> int:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit code.

        The process gets SIGTERM itself (so it can shut down in order); whatever else is left in
        its process group afterwards is killed too.
        """
        p = self.procs[name]
        self.expected_exits.add(name)
        if p.alive():
            _signal_group(p.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            try:
                p.popen.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                p.popen.kill()
        code = p.popen.wait(10)
        _signal_group(p.pid, signal.SIGKILL)
        return code

    def kill(self, name: str) -> int:
        """SIGKILL the process alone (its children, if any, are left to it, as in a real crash)."""
        p = self.procs[name]
        self.expected_exits.add(name)
        if p.alive():
            p.popen.kill()
        return p.popen.wait(10)

    def stop_all(self, timeout: float = 15.0) -> None:
        live = [p for p in self.procs.values() if p.alive()]
        for p in live:
            self.expected_exits.add(p.name)
            _signal_group(p.pid, signal.SIGCONT)
            try:
                p.popen.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for p in live:
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(10)
        for p in self.procs.values():
            _signal_group(p.pid, signal.SIGKILL)  # leftovers of any process, stopped or crashed

    def logs(self) -> str:
        return "\n".join(f"----- {p.name} ({' '.join(p.argv[-4:])}) -----\n{p.output()}" for p in self.procs.values())


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class ProcessExited(RuntimeError):
    """A process of the group exited while the test was waiting on it."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    # Keep each phase's report on the item, so fixtures can tell at teardown whether the test failed.
    outcome = yield
    rep = outcome.get_result()
    _no_skips_in_ci(rep)
    setattr(item, f"rep_{rep.when}", rep)


# Under CI every program the tests use is installed (`make test` runs tools/sysdeps.sh), so a skip
# there means an install step is missing: it fails the run instead of hiding behind a green one.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _no_skips_in_ci(rep: pytest.CollectReport | pytest.TestReport) -> None:
    if IN_CI and rep.skipped and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"skipped under CI=true, where nothing may be missing: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    # Module-level skips (a missing program found at import) are collection reports.
    outcome = yield
    _no_skips_in_ci(outcome.get_result())


@pytest.fixture
def process_group(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessGroup]:
    """A ``ProcessGroup`` rooted in ``tmp_path``; stopped at teardown, its output shown on failure."""
    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
        failed = any(
            getattr(getattr(request.node, f"rep_{when}", None), "failed", False) for when in ("setup", "call")
        )
        if failed and group.procs:
            sys.stderr.write(f"\n===== output of the test's processes =====\n{group.logs()}\n")


@pytest.fixture(scope="session")
def intake_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The cluster the intake API tests share (tests/_intake.py)."""
    from tests import _intake

    yield from _intake.start(tmp_path_factory.mktemp("intake"))
