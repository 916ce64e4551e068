"""Failed credential checks per client: past a bound, a client is refused without any checking.

Only failures that cost a hash count (a wrong secret for a real token id, a wrong password, an
unknown user): those are what guessing a password looks like, and what makes a flood expensive.

Invariants:
- Pure: the clock is an argument; no I/O.
- A fixed window per client: at most ``max_failures`` counted failures per ``window_s``; then
  ``blocked`` says how many seconds remain until the window ends.
- Bounded memory: at most ``max_clients`` clients are tracked; the oldest entry goes first (an
  attacker rotating addresses loses their history, never anyone else's access).
"""

from __future__ import annotations

from collections import OrderedDict

MAX_FAILURES = 30
WINDOW_S = 60.0
MAX_CLIENTS = 10_000


class Lockout:
    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self._clients: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def blocked(self, client: str, now: float) -> float:
        """Seconds until ``client`` may try again; 0 when it may now."""
        entry = self._clients.get(client)
        if entry is None:
            return 0.0
        start, failures = entry
        if now - start >= self.window_s:
            del self._clients[client]
            return 0.0
        return self.window_s - (now - start) if failures >= self.max_failures else 0.0

    def failed(self, client: str, now: float) -> None:
        start, failures = self._clients.get(client, (now, 0))
        if now - start >= self.window_s:
            start, failures = now, 0
        self._clients[client] = (start, failures + 1)
        self._clients.move_to_end(client)
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
