"""Running and watching zlog: the ``zlog`` command (cli), the local cluster under supervisord
(cluster), ``zlog status``, metrics, structured logs, process runtime tuning, and the exactly-once audit.

Invariants:
- Nothing here is on the data path; processes call ``runtime`` and ``logs`` once at start.
"""
