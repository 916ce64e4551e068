"""The ingest router: ``routing`` is its pure state (owners, liveness, in-flight), ``process`` the
process that drives it between the front (producers) and back (workers) ROUTER sockets.

Invariants:
- The router holds no data and never re-encodes record bodies.
"""
