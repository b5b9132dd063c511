"""The site planner: forecasts turned into what the control loop uses (a background task).

Every ``step_s`` (5 minutes) the planner, off the control tick:

1. refreshes the site's forecasts (:class:`agent.forecast.online.SiteForecaster`) in a worker
   thread — the control loop only ever appends samples;
2. sets the **peak threshold** for the flywheels: the highest import (5-minute mean) already
   realised in the peak window (a day by default; a demand charge's month works the same way),
   never above the grid connection limit. Shaving below a peak that has already happened saves
   nothing, and charging only below it never makes a new one; between peaks the flywheels are
   kept ready (90 % by default), standing losses made up within that headroom. Until a step has
   been metered in the window the site's spike rule stands in (logged once). A threshold planned
   on a day-ahead forecast (yesterday's profile, level-shifted, with the flywheel's replayed or
   LP-optimal schedule) was tried and lost to this on every real trace of
   ``scripts/bench_site_control.py``: a day-ahead error of 1-10 % is larger than the few percent
   a flywheel of this size can shave, and charging up to a forecast that is too high makes a
   new peak;
3. predicts a **peak** when the 80 % upper bound of the demand forecast over the next
   15 minutes, less the PV forecast, exceeds the threshold: ``Site.predict_spike`` makes the
   flywheels pre-charge for it as late as their power allows;
4. gives the reserve trigger its **predicted demand**: the 80 % upper bound of the forecast of
   each 5-minute step's *highest* demand (a trigger compares instantaneous demand, so a mean
   would hide bursts), via ``Site.set_demand_forecast``; with no forecast the trigger acts on
   measured demand alone.

Everything the planner sets expires after two steps, so a planner that stops leaves the site
in its safe default. :meth:`SitePlanner.observe` (control loop, every tick) also keeps the
figures an owner asks for: pre-charges, peaks shaved, reserve activations, flywheel wear.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.drivers.base import DeviceKind
from agent.forecast.online import Outlook, SiteForecaster
from gridswarm.clock import Clock

logger = logging.getLogger(__name__)

__all__ = ["ControlStats", "SitePlanner", "build_planner"]


def build_planner(site: Any, clock: Clock, store_path: Path | None = None) -> SitePlanner | None:
    """The planner of an agent's site (None for a site object without devices, e.g. a test fake).
    Its summary is written beside the agent's store as ``<store>.control.json``."""
    if not hasattr(site, "drivers") or not hasattr(site, "set_flywheel_plan"):
        return None
    summary = Path(store_path).with_suffix(".control.json") if store_path is not None else None
    return SitePlanner(site, clock, summary_path=summary)


@dataclass
class ControlStats:
    """What local control did, for the owner's report (counts are transitions, not ticks)."""

    precharges: int = 0
    peaks_shaved: int = 0
    peak_shaved_wh: float = 0.0
    reserve_activations: int = 0
    spikes_predicted: int = 0
    max_import_w: float = 0.0
    flywheel_throughput_wh: float = 0.0
    flywheel_cycles: float = 0.0
    flywheel_standing_loss_wh: float = 0.0
    shave_above_w: float | None = None
    forecast: dict[str, Any] | None = None
    fallback: str | None = None
    orders_shaped: int = 0  # orders the device loop's intent changed
    orders: list[dict[str, Any]] = field(default_factory=list)  # the last 50 order decisions

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


class SitePlanner:
    """Forecasts and flywheel/reserve plans for one :class:`agent.site.Site` (module docstring)."""

    def __init__(self, site: Any, clock: Clock, *, step_s: float = 300.0, readiness_soc: float = 0.9,
                 peak_window_s: float = 86400.0, summary_path: Path | None = None) -> None:
        self.site = site
        self.clock = clock
        self.step_s = float(step_s)
        self.readiness_soc = readiness_soc
        self.peak_window_s = float(peak_window_s)
        self.summary_path = summary_path
        kinds = {d.kind for d in site.drivers.values()}
        self.forecaster = SiteForecaster(clock, step_s=step_s, has_pv=DeviceKind.PV in kinds)
        self.stats = ControlStats()
        self._fly_ids = [d.device_id for d in site.drivers.values() if d.kind is DeviceKind.FLYWHEEL]
        self._prev: dict[str, str] = {}
        self._fly_counters: dict[str, tuple[float, float, float]] = {}
        self._day: int | None = None
        self._today_peak = 0.0
        self._acc: list[float] = [0.0, 0.0, 0]  # step sums: import with storage idle, grid import; count
        self._acc_step: int | None = None
        self._last_spike: float | None = None
        self._warned: str | None = None
        self._observe_failed = False
        self.on_outlook: Any = None  # called with each new outlook (the runtime reports it: agent/forecast_report.py)

    # ------------------------------------------------------------------ control loop side

    def observe(self, state: Any) -> None:
        """Called after every site tick: feed the forecaster, count what control did. Cheap."""
        demand = pv = 0.0
        for dev_id, tel in state.devices.items():
            kind = self.site.drivers[dev_id].kind
            if kind is DeviceKind.LOAD:
                demand += float(tel.detail.get("demand_w", tel.available_charge_w))
            elif kind is DeviceKind.PV:
                pv += float(tel.available_discharge_w)
        self.forecaster.observe(state.ts, demand, pv)
        imp = demand - pv
        grid_import = max(0.0, -state.net_export_w)
        if math.isfinite(imp) and math.isfinite(grid_import):
            step = math.floor(state.ts / self.step_s)
            if self._acc_step is not None and step != self._acc_step and self._acc[2]:
                # the realised peak (step mean) of the day: shaving below it saves nothing
                day = math.floor(self._acc_step * self.step_s / self.peak_window_s)
                if day != self._day:
                    self._day, self._today_peak = day, 0.0
                self._today_peak = max(self._today_peak, self._acc[1] / self._acc[2])
                self.stats.max_import_w = max(self.stats.max_import_w, self._acc[1] / self._acc[2])
                self._acc = [0.0, 0.0, 0]
            self._acc_step = step
            self._acc[0] += imp
            self._acc[1] += grid_import
            self._acc[2] += 1
        dec = state.decision
        shaved = 0.0
        for fid in self._fly_ids:
            sp = dec.setpoints.get(fid)
            if sp is None:
                continue
            kind = ("peak" if "share a peak" in sp.reason or "covers demand" in sp.reason else
                    "pre" if "pre-charge for" in sp.reason else "other")
            before = self._prev.get(fid)
            if kind == "peak":
                shaved += max(0.0, sp.power_w)
            if kind != before:
                if kind == "peak":
                    self.stats.peaks_shaved += 1
                elif kind == "pre":
                    self.stats.precharges += 1
            self._prev[fid] = kind
            tel = state.devices.get(fid)
            if tel is not None:
                self._wear(fid, tel)
        self.stats.peak_shaved_wh += shaved * self.site._last_dt / 3600.0
        self.stats.reserve_activations = max(self.stats.reserve_activations, dec.reserve.activations)

    def observe_safely(self, state: Any) -> None:
        """:meth:`observe`, with a fault logged once instead of raised into the control loop."""
        try:
            self.observe(state)
            if self._observe_failed:
                logger.info("site planner: recovered, observing again")
            self._observe_failed = False
        except Exception:  # noqa: BLE001 - bookkeeping must never stop control
            if not self._observe_failed:
                logger.exception("site planner could not observe a tick; control goes on")
            self._observe_failed = True

    def _wear(self, fid: str, tel: Any) -> None:
        out_wh, in_wh = tel.energy_out_wh, tel.energy_in_wh
        lost = float(tel.detail.get("lost_wh", 0.0))
        if out_wh is None or in_wh is None:
            return
        prev = self._fly_counters.get(fid)
        self._fly_counters[fid] = (out_wh, in_wh, lost)
        if prev is None:
            return
        d_through = max(0.0, out_wh - prev[0]) + max(0.0, in_wh - prev[1])
        self.stats.flywheel_throughput_wh += d_through
        if tel.capacity_wh:
            self.stats.flywheel_cycles += d_through / (2.0 * tel.capacity_wh)
        self.stats.flywheel_standing_loss_wh += max(0.0, lost - prev[2])

    # ------------------------------------------------------------------ background task

    async def run(self) -> None:
        """Refresh forecasts and plans every step until cancelled; faults are logged, never fatal."""
        t = math.floor(self.clock.now() / self.step_s) * self.step_s + self.step_s + 1.0
        while True:
            await self.clock.sleep_until(t)
            try:
                outlook = await asyncio.to_thread(self.forecaster.refresh)
                self.apply(outlook, self.clock.now())
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the planner must survive; the site falls back on expiry
                logger.exception("site planner step failed; plans expire and the site falls back")
            t += self.step_s
            now = self.clock.now()
            if t < now:
                t = math.floor(now / self.step_s) * self.step_s + self.step_s + 1.0

    def apply(self, outlook: Outlook | None, now: float) -> None:
        """Turn an outlook (or its absence) into the site's flywheel plan and reserve prediction."""
        until = now + 2 * self.step_s
        threshold = self._threshold()
        self.stats.shave_above_w = None if threshold is None else round(threshold, 1)
        reason = None
        if threshold is None and self._fly_ids:
            reason = "no step metered in this peak window yet: flywheels use the spike rule"
        self.site.set_flywheel_plan(until, threshold, self.readiness_soc if self._fly_ids else None)
        if outlook is None:
            reason = reason or f"no forecast ({self.forecaster.fallback})"
            self.stats.forecast = None
        else:
            self.stats.forecast = outlook.as_dict()
            if self.on_outlook is not None:
                self.on_outlook(outlook)
            d5 = (outlook.demand_peak or outlook.demand)[min(outlook.demand)]
            self.site.set_demand_forecast(now, until, max(d5.upper80_w, 0.0))
            d15 = outlook.demand[max(outlook.demand)]
            pv15 = outlook.pv[max(outlook.pv)].lower80_w if outlook.pv else 0.0
            peak = d15.peak_upper80_w - max(0.0, pv15)
            if threshold is not None and peak > threshold and self._fly_ids:
                start = outlook.start_ts + d15.peak_offset_s
                if self._last_spike != start:
                    self.site.predict_spike(start, start + self.step_s, peak - threshold)
                    self._last_spike = start
                    self.stats.spikes_predicted += 1
        if reason != self._warned:
            if reason:
                logger.warning("site planner: %s", reason)
            elif self._warned:
                logger.info("site planner: recovered, forecasts and peak threshold in use")
            self._warned = reason
        self.stats.fallback = reason
        self.write_summary()

    def _threshold(self) -> float | None:
        """Today's realised peak import (step means), capped by the connection limit."""
        if math.floor(self.clock.now() / self.peak_window_s) != self._day:
            self._today_peak = 0.0  # a new window: nothing realised yet
        if not self._fly_ids or self._today_peak <= 0.0:
            return None
        cap = self._today_peak
        limits = self.site._grid_limits()
        if limits is not None:
            cap = min(cap, limits[0])
        return cap

    def note_order(self, entry: dict[str, Any]) -> None:
        """The trader reports each order decision with the device loop's intent (bounded)."""
        self.stats.orders.append(entry)
        del self.stats.orders[:-50]
        self.stats.orders_shaped += int(bool(entry.get("shaped")))
        self.write_summary()

    def write_summary(self) -> None:
        if self.summary_path is None:
            return
        tmp = self.summary_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.stats.as_dict(), indent=1))
            os.replace(tmp, self.summary_path)
        except OSError as exc:
            logger.warning("cannot write the control summary %s: %s", self.summary_path, exc)
