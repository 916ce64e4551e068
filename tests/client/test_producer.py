"""The native producers against real router and worker processes.

What must hold: concurrent sends share PRODUCE messages; a lost ACK (the worker stopped with the
batch queued, declared dead, then resumed: it appends and ACKs a request nobody waits for any
more) is retried with the same (producer id, sequence) and stored exactly once, also when the
worker is SIGKILLed and restarted in between; a sequence gap is refused and a duplicate is
answered with the original offsets; a deadline gives TIMEOUT; a partition without an owner gives
NO_OWNER; the blocking Producer is safe to share between threads.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests._cluster import Cluster, http, wait_until
from zlog.client import AsyncClient, AsyncProducer, Producer
from zlog.protocol import bodies, wire
from zlog.protocol.errors import NoOwner, Timeout, ZlogError
from zlog.protocol.wire import Command

# FNV-1a with 4 partitions: worker 0 owns 0 (event_creator) and 1, worker 1 owns 2 and 3 (auth_service).
P0 = "event_creator"
P3 = "auth_service"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("producer")) as c:  # stops its processes whatever happens
        yield c


def routers(c: Cluster) -> list[str]:
    return [f"tcp://127.0.0.1:{c.front}"]


def rec(service: str, message: str) -> dict[str, Any]:
    return {"service": service, "message": message, "timestamp": 1}


def copies(c: Cluster, message: str) -> list[tuple[int, int]]:
    """(partition, offset) of every stored line whose message is ``message``."""
    out = []
    for p in range(c.partitions):
        for off, (_, line) in enumerate(c.stored_lines(p)):
            if f'"message":"{message}"'.encode() in line:
                out.append((p, off))
    return out


def worker_metric(c: Cluster, worker: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{c.worker_metrics_base + worker}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def owners_missing(c: Cluster) -> bool:
    status, _, _ = http("GET", c.url + "/ready", timeout=2)
    return status == 503


def count_produce_messages(producer: AsyncProducer, messages: list[int] | None = None) -> list[int]:
    """Wrap the producer's client so every batch sent is counted (by record count), and every
    PRODUCE message in ``messages`` (one message may carry batches of several partitions)."""
    assert producer.client is not None
    client = producer.client
    sent: list[int] = []
    real = client.send

    def send(command: Command, **kw: Any) -> asyncio.Future[wire.Message]:
        if command is Command.PRODUCE:
            obj = wire.unpack_body(kw["body"])
            batches = [b for _, b in bodies.parse_multi_produce(obj)] if "batches" in obj else [bodies.produce_from(obj)]
            sent.extend(len(b.records) for b in batches)
            if messages is not None:
                messages.append(sum(len(b.records) for b in batches))
        return real(command, **kw)

    client.send = send  # type: ignore[method-assign]
    return sent


def test_concurrent_sends_share_messages_and_get_contiguous_offsets(cluster: Cluster) -> None:
    async def main() -> None:
        producer = AsyncProducer(routers(cluster), linger_ms=20)
        await producer.start()
        sent = count_produce_messages(producer)
        try:
            results = await asyncio.gather(*(producer.send([rec(P0, f"share-{i}")]) for i in range(200)))
        finally:
            await producer.close()
        offsets = [r[0] for r in results]
        assert {p for p, _ in offsets} == {0}
        base = offsets[0][1]
        assert [o for _, o in offsets] == list(range(base, base + 200))  # send order kept
        assert sum(sent) == 200 and len(sent) <= 2, sent

    asyncio.run(main())
    assert len(copies(cluster, "share-199")) == 1


def test_partitions_of_one_owner_share_a_message(cluster: Cluster) -> None:
    p1 = "focus_allocator"  # partition 1: worker 0 owns it with partition 0 (event_creator)

    async def main() -> tuple[list[int], list[int], list[tuple[int, int]]]:
        producer = AsyncProducer(routers(cluster))
        await producer.start()
        messages: list[int] = []
        batches = count_produce_messages(producer, messages)
        try:
            placed = await producer.send([rec(P0, "owner-a"), rec(p1, "owner-b"), rec(P3, "owner-c")])
        finally:
            await producer.close()
        return batches, messages, placed

    batches, messages, placed = asyncio.run(main())
    assert sorted(batches) == [1, 1, 1]  # one batch per partition ...
    assert sorted(messages) == [1, 2]  # ... but partitions 0 and 1 travelled together
    assert [p for p, _ in placed] == [0, 1, 3]
    for (p, offset), message in zip(placed, ("owner-a", "owner-b", "owner-c"), strict=True):
        assert json.loads(list(cluster.stored_lines(p))[offset][1])["message"] == message


def test_batches_are_bounded_by_max_batch_records(cluster: Cluster) -> None:
    async def main() -> list[int]:
        producer = AsyncProducer(routers(cluster), linger_ms=5, max_batch_records=50)
        await producer.start()
        sent = count_produce_messages(producer)
        try:
            await asyncio.gather(*(producer.send([rec(P0, f"bound-{i}")] * 10) for i in range(30)))
        finally:
            await producer.close()
        return sent

    sent = asyncio.run(main())
    assert sum(sent) == 300 and max(sent) <= 50 and len(sent) >= 6, sent


async def _lost_ack_then_retry(cluster: Cluster, message: str, *, kill_and_restart: bool) -> tuple[int, int]:
    producer = AsyncProducer(routers(cluster), delivery_timeout_s=25)
    await producer.start()
    sent = count_produce_messages(producer)
    try:
        cluster.signal("storage-1", signal.SIGSTOP)
        try:
            task = asyncio.ensure_future(producer.send([rec(P3, message)]))
            # The router forwards the batch into the stopped worker's socket, then declares the
            # worker dead (3 heartbeats) and NACKs WORKER_LOST: the producer is now retrying.
            await asyncio.to_thread(wait_until, lambda: owners_missing(cluster), 10, 0.05, "the worker declared dead")
            await asyncio.to_thread(wait_until, lambda: len(sent) >= 2, 10, 0.02, "a retry")
        finally:
            cluster.signal("storage-1", signal.SIGCONT)
        # Resumed, the worker appends the queued batch and ACKs a request nobody waits for.
        await asyncio.to_thread(wait_until, lambda: copies(cluster, message), 10, 0.01, "the first copy on disk")
        if kill_and_restart:
            cluster.kill("storage-1")
            cluster.start("storage-1", wait=False)
        (placed,) = await asyncio.wait_for(task, 25)
    finally:
        await producer.close()
    return placed


def test_a_lost_ack_is_retried_and_stored_once(cluster: Cluster) -> None:
    before = worker_metric(cluster, 1, "zlog_storage_duplicate_batches_total")
    placed = asyncio.run(_lost_ack_then_retry(cluster, "lost-ack-once", kill_and_restart=False))
    assert copies(cluster, "lost-ack-once") == [placed]
    # The acknowledged retry is the worker recognising the sequence, not a second append.
    assert worker_metric(cluster, 1, "zlog_storage_duplicate_batches_total") >= before + 1


def test_a_lost_ack_across_a_worker_sigkill_and_restart_is_stored_once(cluster: Cluster) -> None:
    placed = asyncio.run(_lost_ack_then_retry(cluster, "lost-ack-restart", kill_and_restart=True))
    cluster.wait_ready()
    assert copies(cluster, "lost-ack-restart") == [placed]


def test_sequence_gap_is_refused_and_a_duplicate_gets_the_original_offsets(cluster: Cluster) -> None:
    async def main() -> None:
        client = AsyncClient(routers(cluster))
        pid = os.urandom(12)

        async def produce(seq: int, text: str) -> wire.Message:
            body = bodies.produce_body([f'{{"service":"{P0}","message":"{text}"}}'.encode()], 1, pid, seq)
            return await client.request(Command.PRODUCE, partition=0, body=body, timeout=5)

        try:
            for _ in range(100):  # IMMEDIATE: nothing can be queued before the connection is up
                try:
                    await client.metadata(timeout=1)
                    break
                except ZlogError:
                    await asyncio.sleep(0.02)
            first = bodies.parse_ack((await produce(5, "gap-5")).body)  # a new producer may start anywhere
            with pytest.raises(ZlogError) as gap:
                await produce(7, "gap-7")
            assert gap.value.code == "OUT_OF_ORDER_SEQUENCE" and gap.value.retry
            second = bodies.parse_ack((await produce(6, "gap-6")).body)
            again = bodies.parse_ack((await produce(6, "gap-6")).body)
        finally:
            client.close()
        assert second.offset == first.offset + 1 and not second.duplicate
        assert again.duplicate and again.offset == second.offset
        assert copies(cluster, "gap-7") == []
        assert len(copies(cluster, "gap-6")) == 1

    asyncio.run(main())


def test_no_owner_fails_at_the_deadline_not_later(cluster: Cluster) -> None:
    cluster.kill("storage-1")
    try:
        wait_until(lambda: owners_missing(cluster), 10, what="the router to drop worker 1")

        async def main() -> float:
            producer = AsyncProducer(routers(cluster))
            await producer.start()
            t0 = time.monotonic()
            try:
                with pytest.raises(NoOwner) as err:
                    await producer.send([rec(P3, "nobody-home")], timeout=1.0)
                assert err.value.partition == 3
                # Other partitions are unaffected while 3 has no owner.
                ((p, _),) = await producer.send([rec(P0, "somebody-home")], timeout=5.0)
                assert p == 0
            finally:
                await producer.close()
            return time.monotonic() - t0

        assert asyncio.run(main()) < 4.0
    finally:
        cluster.start("storage-1")
    assert copies(cluster, "nobody-home") == []


def test_threads_share_one_blocking_producer(cluster: Cluster) -> None:
    results: list[list[tuple[int, int]]] = []
    lock = threading.Lock()
    with Producer(routers(cluster), linger_ms=2) as producer:
        assert producer.partitions == 4

        def worker(t: int) -> None:
            futs = [producer.send([rec(P0, f"thread-{t}-{i}"), rec(P3, f"thread-{t}-{i}b")]) for i in range(50)]
            out = [f.result(10) for f in futs]
            with lock:
                results.extend(out)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(20)
        producer.flush(5)
    placed = [x for r in results for x in r]
    assert len(placed) == 400 and len(set(placed)) == 400
    assert {p for p, _ in placed} == {0, 3}
    producer.close()  # twice is fine


@pytest.fixture(scope="module")
def slow_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Heartbeats of 2 s: a stopped worker stays the owner for 6 s, so a 1 s deadline expires first.
    with Cluster(tmp_path_factory.mktemp("slow"), heartbeat_ms=2000) as c:  # stops its processes whatever happens
        yield c


def test_a_hung_worker_gives_timeout_and_later_sends_are_not_stuck_on_the_gap(slow_cluster: Cluster) -> None:
    async def main() -> None:
        producer = AsyncProducer(routers(slow_cluster))
        await producer.start()
        try:
            slow_cluster.signal("storage-0", signal.SIGSTOP)
            t0 = time.monotonic()
            try:
                with pytest.raises(Timeout):
                    await producer.send([rec(P0, "hung-1")], timeout=1.0)
                assert time.monotonic() - t0 < 2.0
            finally:
                slow_cluster.signal("storage-0", signal.SIGCONT)
            # The timed-out batch may or may not be stored; the partition moved to a new producer
            # id, so the next send is not refused as a sequence gap.
            ((p, off),) = await producer.send([rec(P0, "hung-2")], timeout=10.0)
            assert p == 0
        finally:
            await producer.close()
        assert copies(slow_cluster, "hung-2") == [(p, off)]
        assert len(copies(slow_cluster, "hung-1")) <= 1

    asyncio.run(main())


def test_batches_sharing_a_message_each_fail_at_their_own_deadline(slow_cluster: Cluster) -> None:
    # Partitions 0 and 1 share a PRODUCE (one owner): the message's timer is its earliest batch's
    # deadline; the later batch is then retried alone and fails at its own, not earlier.
    async def main() -> None:
        producer = AsyncProducer(routers(slow_cluster))
        await producer.start()
        try:
            slow_cluster.signal("storage-0", signal.SIGSTOP)

            async def timed(service: str, timeout: float) -> float:
                t0 = time.monotonic()
                with pytest.raises(Timeout):
                    await producer.send([rec(service, f"deadline-{timeout}")], timeout=timeout)
                return time.monotonic() - t0

            try:
                early, late = await asyncio.gather(timed(P0, 0.5), timed("focus_allocator", 1.5))
            finally:
                slow_cluster.signal("storage-0", signal.SIGCONT)
            assert 0.45 <= early < 1.2
            assert 1.45 <= late < 2.5
        finally:
            await producer.close()

    asyncio.run(main())
