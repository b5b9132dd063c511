"""Shutdown stops every loop, even one whose cancellation was swallowed once."""

from __future__ import annotations

import asyncio

from agent.runtime import _cancel_all

FOREVER_S = 3600  # the loops below simulate work that never ends by itself: only cancellation stops them


def test_a_loop_that_swallows_a_cancellation_is_cancelled_again() -> None:
    swallowed = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(FOREVER_S)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(1)  # what asyncio.wait_for can do on Python 3.11

    async def polite() -> None:
        await asyncio.sleep(FOREVER_S)

    async def main() -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(stubborn()), asyncio.create_task(polite())]
        await asyncio.sleep(0)
        await asyncio.wait_for(_cancel_all(tasks, wait_s=0.01), 5)
        return tasks

    tasks = asyncio.run(main())
    assert swallowed == [1] and all(t.cancelled() for t in tasks)
