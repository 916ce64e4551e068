"""The storage worker's sealer: closed segments become sealed ones in a low-priority child process.

One child at a time per worker (``zlog.storage.sealer.main`` in its own interpreter, SCHED_IDLE and nice 19,
paced to ``seal.cpu_share`` of a core), so sealing never runs on the ingest path and takes a bounded share
of the CPU; the worker loop only polls it (``tick``) and, when it succeeded, switches the
segment to its sealed file (``PartitionLog.adopt_sealed``: open, check, remove the plain files).

Invariants:
- The child only reads the plain segment and writes ``<base>.jsonl.zst`` (temp, fsync, rename):
  killing it at any point leaves a state the next open resolves (``zlog.storage.sealer``).
- Every tenant's partitions are sealed alike (``logs`` lists them all).
- While a partition has a child sealing one of its segments, retention skips that partition
  (``busy``), so a segment being sealed is never deleted under the child.
- A seal that fails is logged and not retried for that segment until the worker restarts.
- Sealing runs only while ingest is quiet (no commit for ``seal.idle_ms``) or the backlog is over
  ``seal.max_backlog`` segments: otherwise the child is paused (SIGSTOP) or not started. Measured:
  even at idle priority, a seal running beside heavy ingest cost the ingest path CPU per log.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from zlog.config import SealConfig
from zlog.storage import PartitionLog
from zlog.storage.errors import StorageError

log = logging.getLogger("zlog.worker")


class SealMetrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.backlog = Gauge("zlog_seal_backlog_segments", "Closed segments not yet sealed", registry=r)
        self.sealed = Counter("zlog_seal_segments", "Segments sealed", registry=r)
        self.failed = Counter("zlog_seal_failures", "Seals that failed", registry=r)
        self.paused = Gauge("zlog_seal_paused", "1 while the seal process waits for ingest to go quiet",
                            registry=r)
        self.cpu = Counter("zlog_seal_cpu_seconds", "CPU seconds spent by seal processes", registry=r)
        self.raw_bytes = Gauge("zlog_storage_raw_bytes", "Record bytes in plain form", ["partition"], registry=r)
        self.index_bytes = Gauge("zlog_storage_index_bytes", "Bytes of sealed block indexes and token filters",
                                 ["partition"], registry=r)
        self.blocks_read = Gauge("zlog_index_blocks_read", "Sealed blocks decompressed by reads (since start)",
                                 ["partition"], registry=r)
        self.blocks_skipped = Gauge("zlog_index_blocks_skipped",
                                    "Sealed blocks a search skipped by index (since start)", ["partition"],
                                    registry=r)


def _idle_priority(pid: int) -> None:
    """Run the seal process only on CPU nobody else wants (SCHED_IDLE, nice 19), from its first
    instruction on: measured, a seal at normal priority during heavy ingest took CPU from it."""
    try:
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, pid, 19)
    except (AttributeError, OSError):
        pass


Key = tuple[str, int]  # (tenant, partition)


@dataclass(slots=True)
class _Job:
    partition: Key
    base: int
    proc: subprocess.Popen[bytes]


class SealRunner:
    def __init__(self, cfg: SealConfig, logs: Callable[[], Iterable[tuple[Key, PartitionLog]]],
                 registry: CollectorRegistry, default_tenant: str = "") -> None:
        self.cfg = cfg
        self.logs = logs  # every partition log of the worker, of every tenant, as ((tenant, p), log)
        self.metrics = SealMetrics(registry)
        self.job: _Job | None = None
        self.failed: set[tuple[Key, int]] = set()
        self.paused = False
        self.default_tenant = default_tenant  # other tenants' partitions are labelled "<tenant>/<p>"
        self._commits = -1.0
        self._active_at = 0.0

    def busy(self, key: Key) -> bool:
        return self.job is not None and self.job.partition == key

    def backlog(self) -> int:
        return sum(len(plog.unsealed()) for _, plog in self.logs())

    def _may_run(self) -> bool:
        """Ingest has been quiet for ``idle_ms``, or the backlog is too long to wait."""
        now = time.monotonic()
        commits = sum(plog.stats["commits"] for _, plog in self.logs())
        if commits != self._commits:
            self._commits, self._active_at = commits, now
        return (now - self._active_at) * 1000 >= self.cfg.idle_ms or self.backlog() > self.cfg.max_backlog

    def tick(self) -> None:
        if not self.cfg.enabled:
            return
        may_run = self._may_run()
        if self.job is not None:
            if self.job.proc.poll() is None:
                if may_run == self.paused:
                    self.paused = not may_run
                    self.job.proc.send_signal(signal.SIGSTOP if self.paused else signal.SIGCONT)
                    self.metrics.paused.set(int(self.paused))
                return
            self._finish(self.job)
            self.job = None
        if not may_run:
            return
        for p, plog in self.logs():
            for seg in plog.unsealed():
                if (p, seg.base) not in self.failed:
                    self._start(p, plog, seg.base, seg.size)
                    return

    def _start(self, p: Key, plog: PartitionLog, base: int, size: int) -> None:
        c = self.cfg
        # -c, not -m: the package imports the sealer module before runpy would run it as __main__
        args = [sys.executable, "-c", "import sys; from zlog.storage.sealer import main; sys.exit(main())",
                str(plog.directory), str(base), str(size), str(c.block_bytes), str(c.level), str(c.cpu_share)]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        _idle_priority(proc.pid)
        self.job = _Job(p, base, proc)
        self.paused = False
        self.metrics.paused.set(0)

    def _finish(self, job: _Job) -> None:
        out, err = job.proc.communicate()
        plog = dict(self.logs()).get(job.partition)
        where = {"tenant": job.partition[0], "partition": job.partition[1], "base": job.base}
        if plog is None:
            return  # the log was closed meanwhile; its next open resolves the file
        if job.proc.returncode != 0:
            self.failed.add((job.partition, job.base))
            self.metrics.failed.inc()
            log.error("seal failed", extra={**where, "rc": job.proc.returncode,
                                            "detail": err.decode(errors="replace")[-2000:]})
            return
        try:
            blocks, raw, stored, cpu = out.split()
            self.metrics.cpu.inc(float(cpu))
            if plog.adopt_sealed(job.base):
                self.metrics.sealed.inc()
                log.info("segment sealed", extra={**where, "blocks": int(blocks), "raw_bytes": int(raw),
                                                  "stored_bytes": int(stored), "cpu_s": round(float(cpu), 3)})
        except (StorageError, OSError, ValueError) as exc:
            self.failed.add((job.partition, job.base))
            self.metrics.failed.inc()
            log.error("sealed segment not adopted", extra={**where, "detail": str(exc)})

    def refresh(self) -> None:
        m = self.metrics
        m.backlog.set(self.backlog())
        for (tenant, p), plog in self.logs():
            label = str(p) if tenant == self.default_tenant else f"{tenant}/{p}"
            m.raw_bytes.labels(partition=label).set(plog.size_bytes)
            m.index_bytes.labels(partition=label).set(plog.index_bytes)
            m.blocks_read.labels(partition=label).set(plog.stats["blocks_read"])
            m.blocks_skipped.labels(partition=label).set(plog.stats["blocks_skipped"])

    def stop(self) -> None:
        """Stop a running child (its temp file is discarded on the next open)."""
        if self.job is not None:
            self.job.proc.kill()  # a stopped process dies of SIGKILL too
            self.job.proc.communicate()
            self.job = None
