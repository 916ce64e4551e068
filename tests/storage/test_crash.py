"""Real processes: SIGKILL in the middle of appends, and writes failing for lack of space."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zlog.config import FsyncPolicy, StorageConfig
from zlog.storage import PartitionLog
from zlog.storage.errors import DiskFull, StorageError

ROOT = Path(__file__).resolve().parents[2]
CFG = StorageConfig(segment_bytes=16 * 1024, index_interval_bytes=512, fsync=FsyncPolicy("always"))

WRITER = textwrap.dedent("""
    import random, sys
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from zlog.config import FsyncPolicy, StorageConfig
    from zlog.storage import PartitionLog, ProducerBatch

    def batch(seq):
        return [b'{"seq":%d,"k":%d,"pad":"%s"}' % (seq, k, b"x" * (seq % 97)) for k in range(1 + seq % 5)]

    cfg = StorageConfig(segment_bytes=16 * 1024, index_interval_bytes=512, fsync=FsyncPolicy("always"))
    log = PartitionLog.open(Path(sys.argv[2]), cfg)
    seq = int(sys.argv[3])
    print("ready", flush=True)
    rnd = random.Random(seq)
    while True:
        results = []
        for _ in range(rnd.randint(1, 3)):  # several batches share one commit
            results.append((seq, log.append(batch(seq), seq, ProducerBatch(b"writer", seq))))
            seq += 1
        log.commit()
        for s, r in results:
            print(s, r.base_offset, r.count, int(r.duplicate), flush=True)
""")


def batch(seq: int) -> list[bytes]:
    return [b'{"seq":%d,"k":%d,"pad":"%s"}' % (seq, k, b"x" * (seq % 97)) for k in range(1 + seq % 5)]


def test_sigkill_mid_append_loses_no_acknowledged_record(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    data = tmp_path / "p0"
    rnd = random.Random(1234)
    acked = -1  # last sequence whose commit returned
    offsets: dict[int, int] = {}
    deadline = time.monotonic() + 50
    kills = 0
    while kills < 60 and time.monotonic() < deadline:
        child = subprocess.Popen([sys.executable, str(script), str(ROOT), str(data), str(acked + 1)],
                                 stdout=subprocess.PIPE, bufsize=0)  # unbuffered: readline must not
        # swallow lines that communicate() (which reads the raw pipe) would then miss
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n"
            time.sleep(rnd.uniform(0.0, 0.04))
            child.send_signal(signal.SIGKILL)
            out, _ = child.communicate(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        kills += 1
        for line in out.decode().split("\n")[:-1]:  # the part after the last newline was cut by the kill
            seq, base, _count, dup = map(int, line.split())
            assert seq == acked + 1, line
            if dup:  # a retry of a batch committed just before the previous kill
                assert base in (offsets.get(seq, base), -1)
            offsets[seq] = base
            acked = seq
        with PartitionLog.open(data, CFG) as log:
            records = log.read(0, 10**7, 10**10)
            want = [x for s in range(acked + 1) for x in batch(s)]
            assert [x for _, x in records[:len(want)]] == want  # acknowledged: present, in order, once
            assert [o for o, _ in records] == list(range(len(records)))
            extra = records[len(want):]  # committed but its ack was lost to the kill: whole batches
            s = acked + 1
            while extra:
                assert [x for _, x in extra[:len(batch(s))]] == batch(s)
                extra = extra[len(batch(s)):]
                s += 1
            for seq, base in offsets.items():
                if base >= 0:
                    assert records[base][1] == batch(seq)[0]
    assert kills >= 50
    with PartitionLog.open(data, CFG) as log:
        assert log.segment_count > 3
        r = log.append([b"{}"], 1)
        log.commit()
        assert r.base_offset == log.next_offset - 1


FSIZE_CHILD = textwrap.dedent("""
    import json, resource, signal, sys
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from zlog.config import FsyncPolicy, StorageConfig
    from zlog.storage import PartitionLog, ProducerBatch
    from zlog.storage.errors import StorageError

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of dying
    d = Path(sys.argv[2])
    log = PartitionLog.open(d, StorageConfig(fsync=FsyncPolicy("always")))
    for i in range(5):
        log.append([b'{"i":%d}' % i], i, ProducerBatch(b"p", i))
    log.commit()
    size = (d / "00000000000000000000.jsonl").stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, hard))
    log.append([b'{"big":"%s"}' % (b"y" * 1000)], 9, ProducerBatch(b"p", 5))
    try:
        log.commit()
        failed = None
    except StorageError as exc:
        failed = type(exc).__name__
    out = {"failed": failed, "size_after": (d / "00000000000000000000.jsonl").stat().st_size,
           "size_before": size, "next": log.next_offset, "read": len(log.read(0, 100, 10**6))}
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    r = log.append([b'{"big":"%s"}' % (b"y" * 1000)], 9, ProducerBatch(b"p", 5))  # the producer retries
    log.commit()
    out["retry"] = [r.base_offset, r.duplicate, log.next_offset]
    log.close()
    print(json.dumps(out))
""")


def test_failed_write_leaves_no_partial_batch(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(FSIZE_CHILD)
    out = subprocess.run([sys.executable, str(script), str(ROOT), str(tmp_path / "p")],
                         capture_output=True, timeout=30, check=True)
    res = json.loads(out.stdout)
    assert res["failed"] == "StorageError"
    assert res["size_after"] == res["size_before"]
    assert (res["next"], res["read"]) == (5, 5)
    assert res["retry"] == [5, False, 6]
    with PartitionLog.open(tmp_path / "p", StorageConfig()) as log:
        assert log.next_offset == 6 and log.stats["recovery_truncated_bytes"] == 0


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    rc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                        capture_output=True, check=False).returncode if shutil.which("mount") else 1
    if rc != 0:
        pytest.skip("cannot mount a tmpfs here (needs privileges)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_then_space_comes_back(tiny_fs: Path) -> None:
    cfg = StorageConfig(fsync=FsyncPolicy("always"))
    with PartitionLog.open(tiny_fs / "p", cfg) as log:
        log.append([b'{"i":0}'], 0)
        log.commit()
        filler = tiny_fs / "filler"
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        log.append([b'{"big":"%s"}' % (b"z" * 20_000)], 1)
        with pytest.raises(DiskFull):
            log.commit()
        assert log.next_offset == 1 and log.read(0, 10, 10**6) == [(0, b'{"i":0}')]
        filler.unlink()
        r = log.append([b'{"i":1}'], 1)
        log.commit()
        assert r.base_offset == 1
    with PartitionLog.open(tiny_fs / "p", cfg) as log:
        assert [x for _, x in log.read(0, 10, 10**6)] == [b'{"i":0}', b'{"i":1}']
    assert issubclass(DiskFull, StorageError)

