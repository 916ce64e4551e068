"""zlog: a distributed log ingestion cluster (HTTP gateway, ZeroMQ router, partitioned storage).

Invariants:
- Importing ``zlog`` is cheap and has no side effects: no sockets, files, threads or logging
  configuration; each process sets those up in its own ``run``.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
