"""``Producer``: a blocking, thread-safe face on ``AsyncProducer``.

Invariants:
- The ``AsyncProducer`` and its sockets live on one private event-loop thread; callers on any
  thread only hand it coroutines, so the sockets are never touched from two threads.
- ``close`` flushes (bounded by its timeout), stops the loop and joins the thread; it is safe
  to call twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Sequence
from typing import Any

from zlog.client.producer import AsyncProducer


class Producer:
    """A blocking, thread-safe producer: an ``AsyncProducer`` on its own event-loop thread."""

    def __init__(self, routers: Sequence[str], **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="zlog-producer", daemon=True)
        self._thread.start()
        self._async = AsyncProducer(routers, **options)
        self._call(self._async.start()).result()

    def _call(self, coro: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    @property
    def partitions(self) -> int:
        return self._async.partitions

    @property
    def routers(self) -> list[str]:
        """The router endpoints it is connected to now (with ``etcd``: those registered there)."""
        client = self._async.client
        return list(client.endpoints) if client is not None else []

    def send(self, records: Sequence[dict[str, Any]], *, timeout: float | None = None,
             tenant: str | None = None) -> concurrent.futures.Future[list[tuple[int, int]]]:
        """Returns a future of (partition, offset) per record, or raising a named ZlogError."""
        return self._call(self._async.send(records, timeout=timeout, tenant=tenant))

    def flush(self, timeout: float | None = None) -> None:
        self._call(self._async.flush()).result(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Flush and release; safe to call twice."""
        if not self._loop.is_running():
            return
        try:
            self._call(self._async.close(timeout)).result(timeout + 1)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
