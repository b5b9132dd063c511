"""The agent's fast frequency path (``docs/fleet.md``): measured grid frequency to the droop,
independent of the site's slower control tick.

Every ``poll_s`` (clock seconds) the path reads the frequency from the site's measuring driver
(the sim grid's replayed trace, or a SunSpec inverter's ``Hz``) with a light read, and hands it
to :meth:`agent.site.Site.respond_to_frequency`, which re-arbitrates on the last readings and
writes the storage setpoints that changed. The whole chain runs in the agent process; the
coordinator only arms it. The loop survives any driver error (logged once on the transition
and once on recovery) and keeps small bounded statistics of what it did.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from typing import Any

from agent.drivers.base import DriverError
from gridswarm.clock import Clock

__all__ = ["FrequencyFastPath"]

logger = logging.getLogger(__name__)


class FrequencyFastPath:
    def __init__(self, site: Any, clock: Clock, poll_s: float = 0.05, min_change_w: float = 10.0) -> None:
        if not poll_s > 0:
            raise ValueError(f"poll_s: must be > 0, got {poll_s!r}")
        self.site = site
        self.clock = clock
        self.poll_s = float(poll_s)
        self.min_change_w = float(min_change_w)
        self.reads = 0
        self.writes = 0
        self.last_hz: float | None = None
        self.write_s: deque[float] = deque(maxlen=1000)  # wall seconds from read start to write done
        self._failing = False

    @property
    def response_w(self) -> float:
        """The frequency response the site's storage setpoints deliver now, after the owner's
        reserve and the device limits (W, device sign)."""
        return float(self.site.frequency_delivered_w)

    async def step(self) -> bool:
        """One poll: read, respond; True when setpoints were written."""
        src = self.site.frequency_source()
        if src is None:
            return False
        t0 = time.perf_counter()
        if hasattr(src, "read_frequency"):
            hz = await src.read_frequency()
        else:
            hz = (await src.read()).detail.get("frequency_hz")
        if not isinstance(hz, (int, float)) or not math.isfinite(hz) or not 40.0 <= hz <= 70.0:
            return False
        self.reads += 1
        self.last_hz = float(hz)
        written = await self.site.respond_to_frequency(float(hz), min_change_w=self.min_change_w)
        if written:
            self.writes += 1
            self.write_s.append(time.perf_counter() - t0)
        return bool(written)

    async def run(self) -> None:
        t = self.clock.now()
        while True:
            try:
                await self.step()
                if self._failing:
                    logger.info("frequency fast path recovered")
                self._failing = False
            except (DriverError, ValueError) as exc:
                if not self._failing:
                    logger.warning("frequency fast path: %s", exc)
                self._failing = True
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the path must outlive anything a device does
                if not self._failing:
                    logger.exception("frequency fast path failed")
                self._failing = True
            t += self.poll_s
            now = self.clock.now()
            if t < now - self.poll_s:  # fell behind: skip ahead instead of spinning
                t = now
            await self.clock.sleep_until(t)
