"""The site planner: forecasts turned into what the control loop uses (a background task).

Every ``step_s`` (5 minutes) the planner, off the control tick:

1. refreshes the site's forecasts (:class:`agent.forecast.online.SiteForecaster`) in a worker
   thread — the control loop only ever appends samples;
2. sets the **peak threshold** for the flywheels (:class:`agent.control.peak_plan.PeakPlanner`):
   the lowest import the flywheels can hold the forecast of the next day to with the energy they
   hold now (the forecast anchored on the last step's import, re-planned every step), never below
   the highest import already realised in the peak window (a day by default; a demand charge's
   month works the same way: ``control.peak_window_s``) and never above the grid connection
   limit. While the forecast is not trusted, the threshold is the realised peak raised to a
   floor learned from the last days' metered import (the level the flywheels could have held
   most of them to). The flywheels recharge only below the realised peak (or the threshold
   planned on the forecast's lower bound), so charging never makes a new peak; between peaks they are kept
   ready (``control.flywheel_readiness``, 90 % by default), standing losses made up within that
   headroom. Without a forecast the threshold is the realised peak; until a step has been
   metered in the window the site's spike rule stands in (logged once);
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

from agent.control.peak_plan import PeakPlanner, StoreBudget
from agent.drivers.base import DeviceKind
from agent.forecast.online import Outlook, SiteForecaster
from agent.site_port import PlannedSite
from gridswarm.clock import Clock

logger = logging.getLogger(__name__)

__all__ = ["ControlStats", "SitePlanner", "build_planner"]


def build_planner(
    site: object, clock: Clock, store_path: Path | None = None, control: Any = None
) -> SitePlanner | None:
    """The planner of an agent's site (None for a site that is no :class:`PlannedSite`, e.g. a test fake).
    Its summary is written beside the agent's store as ``<store>.control.json``; ``control`` is
    the config's ``control`` section (readiness and peak window)."""
    if not isinstance(site, PlannedSite):
        return None
    summary = Path(store_path).with_suffix(".control.json") if store_path is not None else None
    kw: dict[str, Any] = {}
    if control is not None:
        kw = {"readiness_soc": float(getattr(control, "flywheel_readiness", 0.9)),
              "peak_window_s": float(getattr(control, "peak_window_s", 86400.0))}
    return SitePlanner(site, clock, summary_path=summary, **kw)


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
    charge_below_w: float | None = None
    planned_threshold_w: float | None = None
    forecast: dict[str, Any] | None = None
    fallback: str | None = None
    orders_shaped: int = 0  # orders the device loop's intent changed
    orders: list[dict[str, Any]] = field(default_factory=list)  # the last 50 order decisions

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


class SitePlanner:
    """Forecasts and flywheel/reserve plans for one :class:`agent.site.Site` (module docstring)."""

    def __init__(self, site: PlannedSite, clock: Clock, *, step_s: float = 300.0, readiness_soc: float = 0.9,
                 peak_window_s: float = 86400.0, summary_path: Path | None = None) -> None:
        self.site = site
        self.clock = clock
        self.step_s = float(step_s)
        if not (isinstance(readiness_soc, (int, float)) and 0.0 <= readiness_soc <= 1.0):
            raise ValueError(f"readiness_soc: must be a fraction in [0, 1], got {readiness_soc!r}")
        if not (isinstance(peak_window_s, (int, float)) and math.isfinite(peak_window_s) and peak_window_s >= step_s):
            raise ValueError(f"peak_window_s: must be at least one step ({step_s} s), got {peak_window_s!r}")
        self.readiness_soc = float(readiness_soc)
        self.peak_window_s = float(peak_window_s)
        self.peak = PeakPlanner(self.step_s, window_s=self.peak_window_s)
        self._budget: StoreBudget | None = None
        self._last_import: tuple[float, float] | None = None  # last completed step (start, import, storage idle)
        self._forecast_first: tuple[float, float] | None = None  # last profile's first step (start, import)
        self.summary_path = summary_path
        kinds = {d.kind for d in site.drivers.values()}
        self.forecaster = SiteForecaster(clock, step_s=step_s, has_pv=DeviceKind.PV in kinds)
        self.stats = ControlStats()
        self._fly_ids = [d.device_id for d in site.drivers.values() if d.kind is DeviceKind.FLYWHEEL]
        self._prev: dict[str, str] = {}
        self._fly_counters: dict[str, tuple[float, float, float]] = {}
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
                # the realised peak (step mean) of the window: shaving below it saves nothing
                self.peak.record(self._acc_step * self.step_s, self._acc[1] / self._acc[2])
                self._last_import = (self._acc_step * self.step_s, self._acc[0] / self._acc[2])
                self.peak.observe(*self._last_import)  # the learned floor's history (storage idle)
                self.stats.max_import_w = max(self.stats.max_import_w, self._acc[1] / self._acc[2])
                self._acc = [0.0, 0.0, 0]
            self._acc_step = step
            self._acc[0] += imp
            self._acc[1] += grid_import
            self._acc[2] += 1
        self._budget = self._store_budget(state)
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
        self.stats.peak_shaved_wh += shaved * self.site.last_dt_s / 3600.0
        self.stats.reserve_activations = max(self.stats.reserve_activations, dec.reserve.activations)

    def _store_budget(self, state: Any) -> StoreBudget | None:
        """The flywheels taken together, from this tick's telemetry (None without any)."""
        power = energy = cap = loss = 0.0
        eff = 1.0
        for fid in self._fly_ids:
            tel = state.devices.get(fid)
            if tel is None or tel.soc is None or not tel.capacity_wh:
                continue
            det = tel.detail
            lo, hi = float(det.get("soc_min", 0.0)), float(det.get("soc_max", 1.0))
            lim = self.site.drivers[fid].limits
            power += max(0.0, min(lim.max_w, -lim.min_w))
            energy += max(0.0, (tel.soc - lo) * tel.capacity_wh)
            cap += max(0.0, (hi - lo) * tel.capacity_wh)
            eff = min(eff, float(det.get("discharge_efficiency", 1.0)), float(det.get("charge_efficiency", 1.0)))
            loss = max(loss, float(det.get("standing_loss_per_h") or 0.0))
        if power <= 0 or cap <= 0:
            return None
        try:
            return StoreBudget(power, min(energy, cap), cap, max(eff, 1e-3), min(loss, 0.99))
        except ValueError:
            return None

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
        plan = self._plan(outlook, now)
        threshold = None if plan is None else plan.shave_above_w
        self.stats.shave_above_w = None if threshold is None else round(threshold, 1)
        self.stats.charge_below_w = None if plan is None else round(plan.charge_below_w, 1)
        reason = None
        if threshold is None and self._fly_ids:
            reason = "no step metered in this peak window yet: flywheels use the spike rule"
        self.site.set_flywheel_plan(until, threshold, self.readiness_soc if self._fly_ids else None,
                                    charge_below_w=None if plan is None else plan.charge_below_w)
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

    def _plan(self, outlook: Outlook | None, now: float) -> Any:
        """The peak threshold and charge ceiling (agent/control/peak_plan.py); None before any
        step of the window is metered or without flywheels."""
        if not self._fly_ids:
            return None
        limits = self.site.grid_limits()
        self.peak.limit_w = limits[0] if limits is not None else None
        self.peak.roll(now)
        if self.peak.realised_w <= 0.0:
            return None
        point = outlook.profile_point if outlook is not None else None
        lower = outlook.profile_lower80 if outlook is not None else None
        err = 0.0
        last, first = self._last_import, self._forecast_first
        if last is not None and first is not None and abs(last[0] - first[0]) < 1.0:
            err = last[1] - first[1]  # the last metered step against its forecast
        if point:
            self._forecast_first = (outlook.start_ts, float(point[0]))
        plan = self.peak.plan(now, self._budget, point, lower, error_w=err)
        if plan is not None:
            self.stats.planned_threshold_w = None if plan.planned_w is None else round(plan.planned_w, 1)
        return plan

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
