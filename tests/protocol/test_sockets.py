"""send_frames against real zmq sockets: a message arrives whole, and a refused one leaves nothing.

What must hold: the frames arrive as one multipart message, in order; a full queue raises
zmq.Again and a ROUTER_MANDATORY socket raises EHOSTUNREACH for an unknown peer, in both cases
before any frame is queued (the next message arrives intact, not glued to a partial one);
``readable`` tells whether a message waits.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from zlog.protocol.sockets import readable, send_frames


@pytest.fixture
def ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    c: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield c
    c.destroy(linger=0)


def pair(ctx: zmq.Context[zmq.Socket[bytes]], hwm: int = 1000) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
    server = ctx.socket(zmq.ROUTER)
    server.setsockopt(zmq.LINGER, 0)
    server.setsockopt(zmq.ROUTER_MANDATORY, 1)
    server.setsockopt(zmq.SNDHWM, hwm)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    client = ctx.socket(zmq.DEALER)
    client.setsockopt(zmq.LINGER, 0)
    client.setsockopt(zmq.IDENTITY, b"c1")
    client.setsockopt(zmq.RCVHWM, hwm)
    client.connect(f"tcp://127.0.0.1:{port}")
    send_frames(client, [b"hello"])
    assert server.poll(5000)
    assert server.recv_multipart() == [b"c1", b"hello"]
    return server, client


def test_a_message_arrives_whole_and_in_order(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    server, client = pair(ctx)
    assert not readable(client)
    send_frames(server, [b"c1", b"a", b"", b"c" * 100_000])
    assert client.poll(5000)
    assert readable(client)
    assert client.recv_multipart() == [b"a", b"", b"c" * 100_000]
    assert not readable(client)


def test_an_unknown_peer_is_refused_before_any_frame_is_queued(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    server, client = pair(ctx)
    with pytest.raises(zmq.ZMQError) as refused:
        send_frames(server, [b"nobody", b"x", b"y"])
    assert refused.value.errno == zmq.EHOSTUNREACH
    send_frames(server, [b"c1", b"after"])
    assert client.poll(5000)
    assert client.recv_multipart() == [b"after"]


def test_a_full_queue_raises_again_and_queues_nothing(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    server, client = pair(ctx, hwm=1)
    sent = 0
    with pytest.raises(zmq.Again):
        for sent in range(100_000):  # the peer reads nothing: its queue and ours fill up
            send_frames(server, [b"c1", b"%d" % sent, b"tail"])
    got = []
    while client.poll(200):
        got.append(client.recv_multipart())
    assert got and all(len(m) == 2 and m[1] == b"tail" for m in got)
    assert [int(m[0]) for m in got] == list(range(len(got)))  # whole messages, none glued to another
    send_frames(server, [b"c1", b"after", b"tail"])
    assert client.poll(5000)
    assert client.recv_multipart() == [b"after", b"tail"]
