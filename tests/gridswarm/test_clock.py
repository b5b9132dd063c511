from __future__ import annotations

import asyncio

import pytest

from gridswarm.clock import ManualClock, ScaledClock


def test_manual_clock_wakes_sleepers_in_order() -> None:
    async def main() -> list[str]:
        clock = ManualClock(100.0)
        woke: list[str] = []

        async def sleeper(name: str, t: float) -> None:
            await clock.sleep_until(t)
            woke.append(f"{name}@{clock.now():.0f}")

        tasks = [asyncio.create_task(sleeper("b", 120)), asyncio.create_task(sleeper("a", 110))]
        await asyncio.sleep(0)
        clock.advance(15)
        await asyncio.sleep(0)
        assert woke == ["a@115"]
        clock.advance(10)
        await asyncio.gather(*tasks)
        return woke

    assert asyncio.run(main()) == ["a@115", "b@125"]


def test_manual_clock_never_goes_back() -> None:
    with pytest.raises(ValueError):
        ManualClock(10).set(5)


def test_scaled_clocks_with_same_anchor_agree() -> None:
    a = ScaledClock(sim_start=1000.0, speed=100.0, wall_anchor=50.0)
    b = ScaledClock(sim_start=1000.0, speed=100.0, wall_anchor=50.0)
    assert abs(a.now() - b.now()) < 1.0  # read a few µs apart, 100x faster


def test_scaled_clock_sleep_is_compressed() -> None:
    clock = ScaledClock(sim_start=0.0, speed=1000.0)
    t0 = clock.now()
    asyncio.run(clock.sleep(50.0))  # 50 simulated seconds = 50 ms wall
    assert clock.now() - t0 >= 50.0


def test_speed_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ScaledClock(0.0, 0.0)


def test_real_time_waits_follow_a_manual_clock_when_asked() -> None:
    async def main() -> None:
        clock = ManualClock(100.0, manual_waits=True)
        assert clock.monotonic() == 100.0
        task = asyncio.create_task(clock.wait(5.0))
        await asyncio.sleep(0)
        clock.advance(4.9)
        await asyncio.sleep(0)
        assert not task.done()
        clock.advance(0.1)
        await asyncio.wait_for(task, 1)
        assert clock.monotonic() == 105.0

    asyncio.run(main())


def test_real_time_waits_are_not_scaled() -> None:
    """Back-off waits for another process's recovery: a fast demo clock does not shorten them."""
    clock = ScaledClock(sim_start=0.0, speed=1000.0)
    m0 = clock.monotonic()
    asyncio.run(clock.wait(0.02))
    assert clock.monotonic() - m0 >= 0.02  # 20 ms of real time, not 20 µs
