"""The storage worker: ``process`` is its sockets and loop around the engine (``zlog.storage``),
``reads`` its answers to FETCH, SEARCH and STATS for one partition.

Invariants:
- A worker is the single writer and offset sequencer of each partition it owns.
"""
