#!/usr/bin/env python3
"""The load generator: the original project's ``cmd/loadgen``, re-made, plus closed-loop load.

Defaults behave like the original: ``--total`` 100 logs in ``--batch``es of 10, one request at a
time, ``--delay`` 100 ms between batches, to ``--url`` http://localhost:8080/v1/logs, a failed
batch printed and counted. On top: ``--concurrency`` N senders in a closed loop, ``--seconds``
instead of ``--total``, ``--zmq ENDPOINT`` through the native producer, ``--retry`` honouring
429/503 Retry-After, a progress line on a terminal, a summary (``--json`` for machines) and
``--record-acks FILE`` for exactly-once checks (``--tag`` makes every record unique).

Invariants:
- ``generate`` is pure: the same ``random.Random`` state and start time give the same records.
  Services are uniform over the 4 of the original; levels uniform over
  [DEBUG, INFO, INFO, INFO, WARN, ERROR]; 24 messages per service; 30% of records carry the
  service's labels; timestamps start at ``start_ms`` and advance 50..499 ms per record.
- A batch counts as acknowledged only on a 2xx answer (or a native ACK), and only acknowledged
  records are written to ``--record-acks``; a batch is retried only with ``--retry``.
- Latencies are per request (one batch), from send to answer, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

SERVICES = ("focus_allocator", "event_creator", "auth_service", "notification_service")
LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR")
LABEL_PROBABILITY = 0.3
MIN_STEP_MS, MAX_STEP_MS = 50, 499
REQUEST_TIMEOUT_S = 10.0
MAX_RETRIES = 10

MESSAGES: dict[str, tuple[str, ...]] = {
    "focus_allocator": (
        "focus session started", "focus session ended", "focus session paused", "focus session resumed",
        "focus time suggestion generated", "focus block allocated", "focus block rescheduled",
        "focus block cancelled", "deep work window detected", "calendar scanned for free slots",
        "no free slot found for focus block", "focus goal updated", "focus streak extended",
        "focus streak broken", "daily focus summary computed", "weekly focus report generated",
        "interruption recorded during focus session", "do not disturb enabled", "do not disturb disabled",
        "focus preferences loaded", "focus preferences saved", "allocation conflict resolved",
        "allocation retry scheduled", "focus allocator cache refreshed",
    ),
    "event_creator": (
        "calendar event created", "calendar event updated", "calendar event deleted",
        "recurring event expanded", "event invitation sent", "event invitation accepted",
        "event invitation declined", "event reminder scheduled", "event reminder fired",
        "event time zone normalized", "event conflict detected", "event moved to new slot",
        "event attendees synced", "external calendar sync started", "external calendar sync completed",
        "external calendar sync failed - token expired", "event description sanitized",
        "event location geocoded", "meeting link generated", "event duplicated",
        "event series truncated", "all-day event created", "event export completed",
        "event import rejected - invalid format",
    ),
    "auth_service": (
        "user login successful", "user login failed - invalid credentials", "user login failed - account locked",
        "user logout", "session created", "session expired", "session refreshed", "password reset requested",
        "password reset completed", "password changed", "mfa challenge sent", "mfa verification succeeded",
        "mfa verification failed", "oauth authorization granted", "oauth token refreshed",
        "oauth token revoked", "api key created", "api key revoked", "api key authentication failed",
        "account created", "account locked after repeated failures", "account unlocked",
        "suspicious login detected", "permission denied for resource",
    ),
    "notification_service": (
        "email sent successfully", "email delivery failed - bounce", "email queued", "sms sent successfully",
        "sms delivery failed - invalid number", "push notification sent", "push notification failed - token invalid",
        "in-app notification created", "in-app notification read", "notification preferences updated",
        "notification batched for digest", "daily digest sent", "notification throttled",
        "notification template rendered", "notification template missing", "unsubscribe request processed",
        "webhook delivered", "webhook delivery retried", "webhook delivery failed - timeout",
        "notification deduplicated", "quiet hours respected - notification delayed",
        "notification channel fallback used", "provider rate limit reached", "notification retry scheduled",
    ),
}

LABELS: dict[str, dict[str, tuple[str, ...]]] = {
    "focus_allocator": {
        "focus_type": ("deep_work", "shallow_work", "break", "meeting"),
        "duration_minutes": ("25", "50", "90", "120"),
    },
    "event_creator": {
        "event_type": ("focus_block", "meeting", "break", "reminder"),
        "calendar": ("primary", "work", "personal"),
    },
    "auth_service": {"auth_method": ("password", "oauth", "api_key", "mfa")},
    "notification_service": {"channel": ("email", "sms", "push", "in_app")},
}


def generate(rng: random.Random, start_ms: int, n: int) -> list[dict[str, Any]]:
    """``n`` records like the original's generator; the first has ``timestamp == start_ms``."""
    out: list[dict[str, Any]] = []
    ts = start_ms
    choice, rand, randint = rng.choice, rng.random, rng.randint
    for _ in range(n):
        service = choice(SERVICES)
        record: dict[str, Any] = {
            "timestamp": ts,
            "service": service,
            "level": choice(LEVELS),
            "message": choice(MESSAGES[service]),
        }
        if rand() < LABEL_PROBABILITY:
            record["labels"] = {k: choice(v) for k, v in LABELS[service].items()}
        out.append(record)
        ts += randint(MIN_STEP_MS, MAX_STEP_MS)
    return out


class Stream:
    """Successive batches of one generator run: timestamps keep advancing across batches."""

    def __init__(self, rng: random.Random, start_ms: int, tag: str | None = None) -> None:
        self.rng = rng
        self.next_ms = start_ms
        self.tag = tag
        self.seq = 0

    def batch(self, n: int) -> list[dict[str, Any]]:
        records = generate(self.rng, self.next_ms, n)
        if records:
            self.next_ms = records[-1]["timestamp"] + self.rng.randint(MIN_STEP_MS, MAX_STEP_MS)
        if self.tag is not None:
            for r in records:
                labels = r.setdefault("labels", {})
                labels["zlog_seq"] = f"{self.tag}-{self.seq}"
                self.seq += 1
        return records


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Stats:
    sent: int = 0
    acknowledged: int = 0
    spooled: int = 0
    batches: int = 0
    failed_batches: int = 0
    failed_logs: int = 0
    retries: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    ended: float = 0.0

    def summary(self, target: str, args: argparse.Namespace) -> dict[str, Any]:
        elapsed = (self.ended or time.monotonic()) - self.started
        lat = sorted(self.latencies_ms)
        return {
            "target": target,
            "batch": args.batch,
            "concurrency": args.concurrency,
            "batches": self.batches,
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "spooled": self.spooled,
            "failed_batches": self.failed_batches,
            "failed_logs": self.failed_logs,
            "retries": self.retries,
            "elapsed_s": round(elapsed, 3),
            "logs_per_s": round(self.acknowledged / elapsed, 1) if elapsed > 0 else 0.0,
            "latency_ms": {
                "p50": round(percentile(lat, 50), 3),
                "p99": round(percentile(lat, 99), 3),
                "max": round(lat[-1], 3) if lat else 0.0,
            },
        }


def format_summary(s: dict[str, Any]) -> str:
    lat = s["latency_ms"]
    lines = [
        f"target:          {s['target']}",
        f"sent:            {s['sent']} logs in {s['batches']} batches of up to {s['batch']} "
        f"(concurrency {s['concurrency']})",
        f"acknowledged:    {s['acknowledged']}" + (f" ({s['spooled']} spooled)" if s["spooled"] else ""),
        f"failed batches:  {s['failed_batches']} ({s['failed_logs']} logs)",
        f"retries:         {s['retries']}",
        f"elapsed:         {s['elapsed_s']:.2f} s",
        f"throughput:      {s['logs_per_s']:,.0f} logs/s",
        f"latency (ms):    p50 {lat['p50']:.2f}  p99 {lat['p99']:.2f}  max {lat['max']:.2f}",
    ]
    return "\n".join(lines)


class AckLog:
    """``--record-acks``: one JSON line per acknowledged record, with ``acked_ms`` (wall clock,
    when the acknowledgement arrived) so a test can time when writes resumed."""

    def __init__(self, stream: IO[bytes] | None) -> None:
        self.stream = stream

    def write(self, records: list[dict[str, Any]], places: Sequence[tuple[int, int]] | None = None) -> None:
        if self.stream is None:
            return
        out = bytearray()
        acked_ms = int(time.time() * 1000)
        for i, r in enumerate(records):
            ident: dict[str, Any] = {"service": r["service"], "timestamp": r["timestamp"], "message": r["message"],
                                     "acked_ms": acked_ms}
            seq = r.get("labels", {}).get("zlog_seq")
            if seq is not None:
                ident["seq"] = seq
            if places is not None and i < len(places):
                ident["partition"], ident["offset"] = places[i]
            out += orjson.dumps(ident) + b"\n"
        self.stream.write(out)


# -- senders -----------------------------------------------------------------------------------


class Outcome:
    OK, FAILED, RETRY = "ok", "failed", "retry"


async def _retry_wait(retry_after: str | None, attempt: int) -> None:
    try:
        delay = float(retry_after) if retry_after else 0.0
    except ValueError:
        delay = 0.0
    if delay <= 0:
        delay = min(2.0, 0.05 * 2**attempt)
    await asyncio.sleep(delay)


class HttpSender:
    def __init__(self, url: str, concurrency: int) -> None:
        self.url = url
        self.concurrency = concurrency
        self.session: Any = None

    async def __aenter__(self) -> HttpSender:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.concurrency, keepalive_timeout=60, force_close=False)
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            headers={"Content-Type": "application/json"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def send(self, records: list[dict[str, Any]]) -> tuple[str, str, Any]:
        """(outcome, detail, extra): extra is Retry-After for RETRY, spooled flag for OK."""
        body = orjson.dumps(records)
        try:
            async with self.session.post(self.url, data=body) as resp:
                text = await resp.read()
                if 200 <= resp.status < 300:
                    return Outcome.OK, "", resp.status == 202
                detail = f"status {resp.status}: {text[:200].decode(errors='replace')}"
                if resp.status in (429, 503):
                    return Outcome.RETRY, detail, resp.headers.get("Retry-After")
                return Outcome.FAILED, detail, None
        except TimeoutError:
            return Outcome.FAILED, f"timeout after {REQUEST_TIMEOUT_S:.0f}s", None
        except Exception as exc:  # connection refused/reset: report the batch, keep going
            return Outcome.FAILED, f"{type(exc).__name__}: {exc}", None


class ZmqSender:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.producer: Any = None
        self.places: list[tuple[int, int]] | None = None

    async def __aenter__(self) -> ZmqSender:
        try:
            from zlog.client import Producer  # only this mode needs the native client
        except ImportError:  # run from a checkout without installing: use the checkout's zlog
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from zlog.client import Producer

        loop = asyncio.get_running_loop()
        self.producer = await loop.run_in_executor(None, lambda: Producer(routers=[self.endpoint]))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.producer.close)

    async def send(self, records: list[dict[str, Any]]) -> tuple[str, str, Any]:
        try:
            fut = self.producer.send(records)
            places = await asyncio.wait_for(asyncio.wrap_future(fut), REQUEST_TIMEOUT_S)
        except TimeoutError:
            return Outcome.FAILED, f"timeout after {REQUEST_TIMEOUT_S:.0f}s", None
        except Exception as exc:
            code = getattr(exc, "code", type(exc).__name__)
            if getattr(exc, "retry", False):
                return Outcome.RETRY, f"{code}: {exc}", None
            return Outcome.FAILED, f"{code}: {exc}", None
        return Outcome.OK, "", list(places)


# -- the run ---------------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace, sender: Any, stream: Stream, acks: AckLog) -> None:
        self.args = args
        self.sender = sender
        self.stream = stream
        self.acks = acks
        self.stats = Stats()
        self.remaining = args.total
        self.deadline = time.monotonic() + args.seconds if args.seconds else None
        self.batch_no = 0

    def next_batch(self) -> tuple[int, list[dict[str, Any]]] | None:
        if self.deadline is not None:
            if time.monotonic() >= self.deadline:
                return None
            n = self.args.batch
        else:
            if self.remaining <= 0:
                return None
            n = min(self.args.batch, self.remaining)
            self.remaining -= n
        self.batch_no += 1
        return self.batch_no, self.stream.batch(n)

    async def worker(self) -> None:
        st, args = self.stats, self.args
        while (item := self.next_batch()) is not None:
            number, records = item
            st.sent += len(records)
            st.batches += 1
            attempt = 0
            while True:
                t0 = time.perf_counter()
                outcome, detail, extra = await self.sender.send(records)
                st.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
                if outcome == Outcome.OK:
                    st.acknowledged += len(records)
                    if extra is True:
                        st.spooled += len(records)
                    self.acks.write(records, extra if isinstance(extra, list) else None)
                    break
                if outcome == Outcome.RETRY and args.retry and attempt < MAX_RETRIES:
                    st.retries += 1
                    await _retry_wait(extra if isinstance(extra, str) else None, attempt)
                    attempt += 1
                    continue
                st.failed_batches += 1
                st.failed_logs += len(records)
                print(f"batch {number} failed: {detail}", file=sys.stderr, flush=True)
                break
            if args.delay > 0:
                await asyncio.sleep(args.delay / 1000.0)

    async def progress(self) -> None:
        st = self.stats
        last_t, last_acked = time.monotonic(), 0
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            rate = (st.acknowledged - last_acked) / (now - last_t)
            last_t, last_acked = now, st.acknowledged
            if self.deadline is not None:
                done = min(1.0, 1 - (self.deadline - now) / self.args.seconds)
            else:
                done = st.sent / self.args.total if self.args.total else 1.0
            bar = "#" * int(done * 30)
            sys.stderr.write(
                f"\r[{bar:<30}] {done * 100:5.1f}%  sent {st.sent:,}  acked {st.acknowledged:,}  "
                f"failed {st.failed_batches}  {rate:,.0f} logs/s "
            )
            sys.stderr.flush()

    async def run(self) -> Stats:
        show = sys.stderr.isatty() and not self.args.quiet
        ticker = asyncio.create_task(self.progress()) if show else None
        try:
            await asyncio.gather(*(self.worker() for _ in range(self.args.concurrency)))
        finally:
            self.stats.ended = time.monotonic()
            if ticker is not None:
                ticker.cancel()
                sys.stderr.write("\n")
        return self.stats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Send generated logs to zlog (or any server speaking the original's API).")
    p.add_argument("--url", default="http://localhost:8080/v1/logs", help="ingest URL")
    p.add_argument("--batch", type=int, default=10, help="logs per batch")
    p.add_argument("--total", type=int, default=100, help="total logs to send")
    p.add_argument("--delay", type=float, default=100, help="delay between batches in ms (per sender)")
    p.add_argument("--concurrency", type=int, default=1, help="concurrent senders (closed loop)")
    p.add_argument("--seconds", type=float, default=0, help="run for this long instead of --total")
    p.add_argument("--seed", type=int, help="random seed (default: time-based)")
    p.add_argument("--zmq", metavar="ENDPOINT", help="send through the native producer to this router")
    p.add_argument("--retry", action="store_true", help="honour 429/503 Retry-After and resend")
    p.add_argument("--tag", help="add a unique labels.zlog_seq = <tag>-<n> to every record")
    p.add_argument("--record-acks", metavar="FILE", help="write each acknowledged record's identity (JSON lines)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    stream = Stream(rng, int(time.time() * 1000), args.tag)
    ack_file = open(args.record_acks, "wb") if args.record_acks else None  # noqa: SIM115
    try:
        sender: Any = ZmqSender(args.zmq) if args.zmq else HttpSender(args.url, args.concurrency)
        async with sender:
            stats = await Run(args, sender, stream, AckLog(ack_file)).run()
    finally:
        if ack_file is not None:
            ack_file.close()
    return stats.summary(f"zmq {args.zmq}" if args.zmq else args.url, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch < 1 or args.concurrency < 1 or args.total < 0 or args.seconds < 0 or args.delay < 0:
        print("loadgen: --batch and --concurrency must be >= 1; --total, --seconds, --delay >= 0", file=sys.stderr)
        return 2
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        summary = runner(amain(args))
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(orjson.dumps(summary).decode())
    else:
        print(format_summary(summary))
    return 0 if summary["failed_batches"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
