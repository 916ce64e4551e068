"""``Pending``: one future per call, resolved once when the last of its groups is settled."""

from __future__ import annotations

import asyncio

from zlog.client.batch import Pending, Share
from zlog.protocol.errors import ZlogError


def test_resolves_once_when_the_last_group_is_settled_and_the_first_result_of_each_stays() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        p = Pending(loop.create_future(), 3)
        p.settle(2, Share(1, 10, 5))
        p.settle(0, ZlogError("TIMEOUT", "late", partition=0))
        assert not p.future.done()
        p.settle(0, Share(0, 1, 1))  # a group is settled once: the first result stays
        assert not p.future.done()
        p.settle(1, Share(0, 7, 2))
        results = await p.future
        assert [type(r) for r in results] == [ZlogError, Share, Share]
        assert results[1] == Share(0, 7, 2) and results[2] == Share(1, 10, 5)
        p.settle(1, Share(9, 9, 9))  # after the end: nothing changes, nothing raises
        assert (await p.future)[1] == Share(0, 7, 2)

    asyncio.run(run())


def test_no_groups_is_settled_at_once_and_a_cancelled_caller_is_left_alone() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        assert await Pending(loop.create_future(), 0).future == []
        p = Pending(loop.create_future(), 1)
        p.future.cancel()  # the caller stopped waiting
        p.settle(0, Share(0, 0, 1))  # must not raise InvalidStateError
        assert p.future.cancelled()

    asyncio.run(run())
