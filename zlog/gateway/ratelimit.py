"""Per-client ingest rate limits: a token bucket of records per second for each client address.

Invariants:
- Pure: the caller passes ``now`` (monotonic seconds); tested with a fake clock.
- Bounded memory: at most ``max_clients`` buckets; the least recently used is forgotten first
  (a forgotten client starts again with a full bucket, which errs on the side of admitting).
- A request is admitted whole or refused whole; a refusal says how long until it would fit.
"""

from __future__ import annotations

from collections import OrderedDict


class RateLimiter:
    def __init__(self, rate: float, burst_s: float = 2.0, max_clients: int = 10_000) -> None:
        self.rate = rate
        self.capacity = rate * burst_s
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def admit(self, client: str, cost: int, now: float) -> float:
        """0.0 if admitted (tokens taken), else the seconds to wait before retrying."""
        tokens, at = self._buckets.pop(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate)
        wait = 0.0
        if cost <= tokens:
            tokens -= cost
        else:
            # A request larger than the bucket can never fit: admit it once the bucket is full.
            need = min(cost, self.capacity) - tokens
            if need > 0:
                wait = need / self.rate
            else:
                tokens = 0.0
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait
