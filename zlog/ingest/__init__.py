"""Records on the way in: parse request bodies, validate, enrich, encode the stored JSON line.

Invariants:
- Pure: no sockets, files or clocks beyond the ``now`` a caller passes; the only encoder of stored lines.
"""
