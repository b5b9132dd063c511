"""Injected clocks (docs/architecture.md §7): every control, forecast and market component asks one of these
for the time, never the wall clock directly.

- :class:`WallClock` runs production: UTC epoch seconds, real sleeps.
- :class:`ScaledClock` runs the demo: simulated time advances ``speed`` times faster than the
  wall clock from a shared anchor, so separate processes given the same anchor agree on the
  simulated time without talking to each other.
- :class:`ManualClock` runs unit tests: time moves only when the test advances it, and sleepers
  wake in order as it does (like trio's ``MockClock``).

All times are seconds since the UTC epoch (floats); durations are seconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


@runtime_checkable
class Clock(Protocol):
    """What components ask for time."""

    def now(self) -> float:
        """Current (possibly simulated) time, UTC epoch seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of this clock's time."""
        ...

    async def sleep_until(self, t: float) -> None:
        """Sleep until this clock reads at least ``t``."""
        ...

    def monotonic(self) -> float:
        """Seconds of real elapsed time (any origin) for retries, back-off and resends."""
        ...

    async def wait(self, seconds: float) -> None:
        """Wait ``seconds`` of real time (retries, back-off, resends): another process's
        recovery does not speed up with a scaled clock, so these waits are not scaled."""
        ...


class WallClock:
    """Real time."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - self.now()))

    def monotonic(self) -> float:
        return time.monotonic()

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Simulated time running ``speed`` times faster than real time.

    ``sim_start`` is the simulated time at wall time ``wall_anchor`` (both epoch seconds).
    Processes built with the same three numbers read the same simulated time.
    """

    def __init__(self, sim_start: float, speed: float, wall_anchor: float | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        self.sim_start = float(sim_start)
        self.speed = float(speed)
        self.wall_anchor = time.time() if wall_anchor is None else float(wall_anchor)

    def now(self) -> float:
        return self.sim_start + (time.time() - self.wall_anchor) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    async def sleep_until(self, t: float) -> None:
        while True:
            remaining = t - self.now()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining / self.speed)

    def monotonic(self) -> float:
        return time.monotonic()

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def to_dict(self) -> dict[str, float]:
        return {"sim_start": self.sim_start, "speed": self.speed, "wall_anchor": self.wall_anchor}


class ManualClock:
    """Time that moves only when :meth:`advance` (or :meth:`set`) is called.

    Real-time waits (:meth:`wait`, :meth:`monotonic`: retries, back-off, resends) are real by
    default, so a test that drives a site by hand still sees a peer reconnect; with
    ``manual_waits=True`` they follow this clock too, and the test drives them by advancing it.
    """

    def __init__(self, start: float = 0.0, *, manual_waits: bool = False) -> None:
        self._now = float(start)
        self.manual_waits = manual_waits
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + max(0.0, seconds))

    async def sleep_until(self, t: float) -> None:
        if t <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (t, next(self._counter), fut))
        await fut

    def monotonic(self) -> float:
        return self._now if self.manual_waits else time.monotonic()

    async def wait(self, seconds: float) -> None:
        if self.manual_waits:
            await self.sleep(seconds)
        else:
            await asyncio.sleep(max(0.0, seconds))

    def set(self, t: float) -> None:
        """Jump to ``t`` (never backwards) and wake every sleeper due by then."""
        if t < self._now:
            raise ValueError(f"a manual clock cannot go backwards ({t} < {self._now})")
        self._now = float(t)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)


class ClockConfig(BaseModel):
    """The ``clock:`` section of the coordinator's and the agents' config files: ``wall`` in
    production; ``scaled`` (shared ``sim_start``, ``speed`` and ``wall_anchor``) in the demo."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["wall", "scaled"] = "wall"
    sim_start: float = 0.0
    speed: float = Field(default=1.0, gt=0)
    wall_anchor: float | None = None

    def build(self) -> Clock:
        if self.kind == "wall":
            return WallClock()
        return ScaledClock(self.sim_start, self.speed, self.wall_anchor)
