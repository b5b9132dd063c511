"""The agent's fast frequency path (``docs/fleet.md``): measured grid frequency to the droop,
independent of the site's slower control tick.

Every ``poll_s`` (clock seconds) the path reads the frequency from the site's measuring driver
(the sim grid's replayed trace, or a SunSpec inverter's ``Hz``) with a light read, and hands it
to :meth:`agent.site.Site.respond_to_frequency`, which re-arbitrates on the last readings and
writes the storage setpoints that changed. The whole chain runs in the agent process; the
coordinator only arms it. The loop survives any driver error (logged once on the transition
and once on recovery) and keeps small bounded statistics of what it did.

Event mode: while the frequency moves fast (``|df/dt| >= event_rocof_hz_s``) or sits far off
nominal (``|f - nominal| >= event_hz``), and for ``event_hold_s`` after, the path polls every
``event_poll_s`` instead of ``poll_s``. In normal operation a poll costs a register read; in an
event the response follows a falling frequency within ``event_poll_s`` instead of ``poll_s``.

``record_path``: a JSON-lines record of every write and every change of arming (clock time
after the write, measured Hz, the droop's request, the response the setpoints deliver, the
armed share and mode) — the performance-monitoring data a frequency service is audited on;
at most ``record_max`` lines, then recording stops (logged once).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from pathlib import Path
from typing import Any

from agent.drivers.base import DriverError
from gridswarm.clock import Clock

__all__ = ["FrequencyFastPath"]

logger = logging.getLogger(__name__)

MIN_WALL_POLL_S = 0.002  # the event rate's floor in wall seconds (a clock scaled up stays affordable)


class FrequencyFastPath:
    def __init__(self, site: Any, clock: Clock, poll_s: float = 0.05, min_change_w: float = 10.0, *,
                 event_poll_s: float | None = None, event_rocof_hz_s: float = 0.05, event_hz: float = 0.1,
                 event_hold_s: float = 5.0, record_path: Path | str | None = None,
                 record_max: int = 200_000) -> None:
        if not poll_s > 0:
            raise ValueError(f"poll_s: must be > 0, got {poll_s!r}")
        if event_poll_s is not None and not 0 < event_poll_s <= poll_s:
            raise ValueError(f"event_poll_s: must be within (0, poll_s], got {event_poll_s!r}")
        self.site = site
        self.clock = clock
        self.poll_s = float(poll_s)
        ev = float(event_poll_s) if event_poll_s is not None else self.poll_s
        # on a scaled clock, never poll more often than every MIN_WALL_POLL_S of wall time
        speed = float(getattr(clock, "speed", 1.0) or 1.0)
        self.event_poll_s = min(self.poll_s, max(ev, MIN_WALL_POLL_S * speed))
        self.event_rocof_hz_s = float(event_rocof_hz_s)
        self.event_hz = float(event_hz)
        self.event_hold_s = float(event_hold_s)
        self.min_change_w = float(min_change_w)
        self.reads = 0
        self.writes = 0
        self.last_hz: float | None = None
        self._last_read_t: float | None = None
        self._event_until = -math.inf
        self.write_s: deque[float] = deque(maxlen=1000)  # wall seconds from read start to write done
        self._failing = False
        self.record_path = None if record_path is None else Path(record_path)
        self.record_max = int(record_max)
        self._records = 0
        self._record_fh: Any = None
        self._recorded_arm: Any = None

    @property
    def response_w(self) -> float:
        """The frequency response the site's storage setpoints deliver now, after the owner's
        reserve and the device limits (W, device sign)."""
        return float(self.site.frequency_delivered_w)

    def in_event(self) -> bool:
        """True while the path polls at its event rate."""
        return self.clock.now() < self._event_until

    def _track_event(self, hz: float, now: float) -> None:
        arm = getattr(self.site, "frequency_arm", None)
        nominal = arm.nominal_hz if arm is not None else 50.0
        fast = abs(hz - nominal) >= self.event_hz
        if self.last_hz is not None and self._last_read_t is not None and now > self._last_read_t:
            fast = fast or abs(hz - self.last_hz) / (now - self._last_read_t) >= self.event_rocof_hz_s
        if fast:
            self._event_until = now + self.event_hold_s

    def _record(self, hz: float) -> None:
        if self.record_path is None or self._records >= self.record_max:
            return
        arm = getattr(self.site, "frequency_arm", None)
        try:
            if self._record_fh is None:
                self.record_path.parent.mkdir(parents=True, exist_ok=True)
                self._record_fh = self.record_path.open("a", encoding="utf-8")
            row = {"t": round(self.clock.now(), 4), "hz": round(hz, 5),
                   "request_w": round(float(self.site.frequency_request_w(self.clock.now())), 2),
                   "delivered_w": round(self.response_w, 2),
                   "share_w": round(arm.p_ref_w, 2) if arm is not None and arm.active(self.clock.now()) else 0.0,
                   "mode": arm.mode if arm is not None else None}
            self._record_fh.write(json.dumps(row) + "\n")
            self._record_fh.flush()
            self._records += 1
            if self._records >= self.record_max:
                logger.warning("frequency record %s: %d lines, recording stops", self.record_path, self.record_max)
        except OSError as exc:
            logger.warning("frequency record %s: %s; recording stops", self.record_path, exc)
            self._records = self.record_max

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
        now = self.clock.now()
        self.reads += 1
        self._track_event(float(hz), now)
        self.last_hz, self._last_read_t = float(hz), now
        written = await self.site.respond_to_frequency(float(hz), min_change_w=self.min_change_w)
        if written:
            self.writes += 1
            self.write_s.append(time.perf_counter() - t0)
        arm = getattr(self.site, "frequency_arm", None)
        if written or arm is not self._recorded_arm:
            self._recorded_arm = arm
            self._record(float(hz))
        return bool(written)

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self._record_fh is not None:
                self._record_fh.close()
                self._record_fh = None

    async def _run(self) -> None:
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
            period = self.event_poll_s if self.in_event() else self.poll_s
            t += period
            now = self.clock.now()
            if t < now - period:  # fell behind: skip ahead instead of spinning
                t = now
            if t <= now:  # no time left to sleep: still let the loop's other tasks run
                await asyncio.sleep(0)
            await self.clock.sleep_until(t)
