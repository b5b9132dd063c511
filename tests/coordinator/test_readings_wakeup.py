"""The market loop waits for meter readings on the hub's signal, not by polling the store."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from coordinator.hub import Changed
from coordinator.market.loop import MarketLoop
from gridswarm.clock import ManualClock


def test_a_change_from_another_thread_wakes_the_waiter() -> None:
    async def scenario() -> None:
        changed = Changed()
        seen = changed.version
        never = asyncio.get_running_loop().create_future()
        waiter = asyncio.create_task(changed.wait(seen, never))
        await asyncio.sleep(0)
        assert not waiter.done()
        threading.Thread(target=changed.notify).start()
        await asyncio.wait_for(waiter, 10)
        assert changed.version == seen + 1
        # a change between reading the version and waiting is not missed
        await asyncio.wait_for(changed.wait(seen, never), 1)
        never.cancel()

    asyncio.run(scenario())


def test_the_wait_ends_at_its_deadline_without_a_change() -> None:
    async def scenario() -> None:
        clock = ManualClock(100.0, manual_waits=True)
        changed = Changed()
        waiter = asyncio.create_task(changed.wait(changed.version, clock.sleep_until(200.0)))
        await asyncio.sleep(0)
        assert not waiter.done()
        clock.set(200.0)
        await asyncio.wait_for(waiter, 10)

    asyncio.run(scenario())


@pytest.mark.parametrize("late", [False, True])
def test_the_loop_settles_as_soon_as_the_last_reading_is_stored(late: bool) -> None:
    """The clock never moves (manual waits), so only the hub's signal can end the wait before
    the deadline; past the deadline the loop goes on without the missing reading."""

    async def scenario() -> None:
        clock = ManualClock(1_000.0, manual_waits=True)
        have: set[str] = {"0xA"}
        reads = []

        def reading_senders(k: int) -> set[str]:
            reads.append(k)
            return set(have)

        hub = SimpleNamespace(readings_stored=Changed())
        fake = SimpleNamespace(hub=hub, clock=clock, store=SimpleNamespace(reading_senders=reading_senders))
        task = asyncio.create_task(MarketLoop._wait_for_readings(fake, 7, {"0xA", "0xB"}, 2_000.0))  # type: ignore[arg-type]
        with pytest.raises(asyncio.TimeoutError):  # nothing changes for a while: the store is read once
            await asyncio.wait_for(asyncio.shield(task), 0.3)
        assert reads == [7]
        if late:
            clock.set(2_000.0)  # the deadline: settle without 0xB
        else:
            have.add("0xB")
            hub.readings_stored.notify()
        await asyncio.wait_for(task, 10)
        assert clock.now() == (2_000.0 if late else 1_000.0)

    asyncio.run(scenario())


def test_a_wait_that_returns_at_once_leaves_no_coroutine_unawaited() -> None:
    async def scenario() -> None:
        changed = Changed()
        seen = changed.version
        changed.notify()
        clock = ManualClock(0.0, manual_waits=True)
        deadline = clock.sleep_until(10.0)
        await changed.wait(seen, deadline)
        assert deadline.cr_frame is None  # closed, not left pending

    asyncio.run(scenario())
