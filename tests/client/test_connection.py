"""AsyncClient's choice of router: the chosen one, else the next that takes the request."""

from __future__ import annotations

import asyncio

import pytest
import zmq

from tests._cluster import free_ports
from zlog.client.connection import AsyncClient
from zlog.protocol import wire
from zlog.protocol.errors import Backpressure
from zlog.protocol.wire import Command


def test_a_request_for_an_unconnected_router_goes_to_the_next_one() -> None:
    dead = free_ports(2)  # nothing listens on ``dead``
    live = dead + 1
    ctx = zmq.Context.instance()
    server = ctx.socket(zmq.ROUTER)
    server.bind(f"tcp://127.0.0.1:{live}")

    async def run() -> None:
        client = AsyncClient([f"tcp://127.0.0.1:{dead}", f"tcp://127.0.0.1:{live}"])
        try:
            await asyncio.sleep(0.3)  # the live one connects; the dead one never does
            fut = client.send(Command.METADATA, socket_index=0)
            loop = asyncio.get_running_loop()
            frames = await loop.run_in_executor(None, server.recv_multipart)
            msg = wire.decode(frames[1:])
            server.send_multipart([frames[0], *wire.encode(Command.RESULT, msg.request_id, body={"ok": True})])
            reply = await asyncio.wait_for(fut, 5)
            assert reply.unpack() == {"ok": True}
        finally:
            client.close()
        only_dead = AsyncClient([f"tcp://127.0.0.1:{dead}"])
        try:
            with pytest.raises(Backpressure):
                only_dead.send(Command.METADATA)
        finally:
            only_dead.close()

    try:
        asyncio.run(run())
    finally:
        server.close(0)
