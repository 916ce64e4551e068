"""Sending a multipart message without pyzmq's per-frame Python layers.

pyzmq's ``send_multipart`` checks every frame's buffer interface and ORs ``zmq.SNDMORE`` into the
flags as an ``IntFlag`` for every frame (enum arithmetic in Python), and ``zmq.POLLIN`` tests cost
the same: measured here, 7.2 µs against 2.2 µs per 5-frame message for the same zmq calls with
plain-int flags, and 9 µs against 3.3 µs per readiness test. Every hop of a produce sends a few
such messages and tests readiness a few times per request.

Invariants:
- ``send_frames`` behaves as ``sock.send_multipart(frames, zmq.NOBLOCK)`` for frames of bytes: zmq
  takes a multipart message whole or not at all, and refuses it (``zmq.Again`` for a full queue,
  ``EHOSTUNREACH`` from a ROUTER_MANDATORY socket) on its first frame, before any of it is queued.
- Frames must be bytes (or other buffers); callers build them with ``zlog.protocol.wire``.
"""

from __future__ import annotations

from collections.abc import Sequence

import zmq

POLLIN = int(zmq.POLLIN)
EVENTS = int(zmq.EVENTS)
_LAST = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)


def send_frames(sock: zmq.Socket[bytes], frames: Sequence[bytes]) -> None:
    """Queue one multipart message without blocking (raises ``zmq.ZMQError`` as zmq does)."""
    send = sock.send
    last = len(frames) - 1
    for i in range(last):
        send(frames[i], _MORE)
    send(frames[last], _LAST)


def readable(sock: zmq.Socket[bytes]) -> bool:
    """A message is waiting (also processes zmq's pending commands, as any socket call does)."""
    return bool(int(sock.getsockopt(EVENTS)) & POLLIN)
