"""What crosses a socket: the frame codec (wire), named errors with their NACK codes, partitioning.

Invariants:
- Frames are built and parsed only in ``wire``; every error maps to one NACK code and one HTTP status.
- Partitioning (``hashing``) is a pure function pinned against the reference implementation.
"""
