"""The running agent's own forecasts: site demand (and PV) 5 and 15 minutes ahead, with intervals.

:class:`SiteForecaster` has two halves that run on different threads:

- :meth:`~SiteForecaster.observe` is called by the control loop every tick. It only averages
  the tick's demand (and PV) into the current step (``step_s``, 5 minutes by default) and, when
  a step completes, puts its mean on a bounded queue. O(1), never raises, never blocks.
- :meth:`~SiteForecaster.refresh` is called by the planner in a worker thread
  (``asyncio.to_thread``): it feeds the completed steps to one
  :class:`~agent.forecast.auto.AutoForecaster` per series (refits and re-selection happen
  there, off the control tick) and publishes an immutable :class:`Outlook` with a forecast for
  every horizon in ``horizons_s``. ``auto`` picks its model per horizon.

Only history-based candidates run here (persistence, daily/weekly seasonal naive and level
shift): they need numpy only, so the agent process stays small; PV is forecast from its own
history the same way (the pvlib model of :mod:`agent.forecast.pv` needs pandas and a location).

Bad input never stops the agent; each case is logged once on the transition, and "recovered"
on the way back:

=====================================  ========================================================
input                                  what happens
=====================================  ========================================================
NaN / inf / negative / absurd reading  the sample is dropped (absurd: above ``max_w``)
clock goes back                        samples at or before the last one are dropped
clock jumps forward                    the step in progress is closed; the forecaster imputes
                                       short gaps and restarts its history after long ones
missing or short history               ``outlook`` is None (fewer than ``min_history`` steps):
                                       the planner falls back to safe control
forecast not finite / forecaster fails ``outlook`` is None until a good forecast comes back
=====================================  ========================================================
"""

from __future__ import annotations

import collections
import logging
import math
from dataclasses import dataclass
from typing import Any

from gridswarm.clock import Clock

logger = logging.getLogger(__name__)

__all__ = ["CANDIDATES", "Outlook", "SeriesOutlook", "SiteForecaster", "profile_forecast"]

CANDIDATES = ("persistence", "seasonal_naive_daily", "level_shift_daily", "seasonal_naive_weekly",
              "level_shift_weekly")
_RECOVER_AFTER = 20  # good readings in a row before a bad-input warning is cleared
_MAX_PENDING = 10_000  # completed steps waiting for refresh (35 days at 5 min): bounded


@dataclass(frozen=True, slots=True)
class SeriesOutlook:
    """One series over ``[start_ts, start_ts + horizon_s)``: means and the peak of the 80 % band."""

    horizon_s: float
    point_w: float  # mean of the point forecast over the horizon
    lower80_w: float  # mean of the 80 % lower bound
    upper80_w: float  # mean of the 80 % upper bound
    peak_upper80_w: float  # highest 80 % upper bound of any step in the horizon
    peak_offset_s: float  # start of that step, seconds after the outlook's start_ts
    model: str
    fallback: str | None
    # The horizon's last step, [start_ts + horizon_s - step_s, start_ts + horizon_s): point,
    # 80 % and 95 % bounds (W), as the agent reports it to the coordinator (agent/forecast_report.py).
    last_step: tuple[float, float, float, float, float] | None = None


@dataclass(frozen=True, slots=True)
class Outlook:
    """What the site expects, made at ``made_ts``; forecasts start at ``start_ts``."""

    made_ts: float
    start_ts: float
    step_s: float
    demand: dict[float, SeriesOutlook]  # by horizon (s): step means
    pv: dict[float, SeriesOutlook] | None
    history_steps: int
    demand_peak: dict[float, SeriesOutlook] | None = None  # the highest reading of each step
    # site import (demand less PV) per step over the next ``profile_s``, from start_ts: the point
    # forecast and its 80 % lower bound (the peak threshold's plan, agent/control/peak_plan.py)
    profile_point: tuple[float, ...] | None = None
    profile_lower80: tuple[float, ...] | None = None
    profile_upper80: tuple[float, ...] | None = None  # its 80 % upper bound (what a lender keeps, agent/fleet_link.py)

    def as_dict(self) -> dict[str, Any]:
        def one(d: dict[float, SeriesOutlook] | None) -> dict[str, Any] | None:
            if d is None:
                return None
            return {f"{int(h)}s": {"point_w": round(o.point_w, 1), "lower80_w": round(o.lower80_w, 1),
                                   "upper80_w": round(o.upper80_w, 1), "model": o.model, "fallback": o.fallback}
                    for h, o in d.items()}

        return {"made_ts": self.made_ts, "start_ts": self.start_ts, "step_s": self.step_s,
                "history_steps": self.history_steps, "demand": one(self.demand), "pv": one(self.pv),
                "demand_peak": one(self.demand_peak)}


def profile_forecast(forecaster: Any, steps: int) -> Any:
    """The import profile's forecast over ``steps``: with ``auto``, each step from the candidate
    chosen for its own horizon (:meth:`agent.forecast.auto.AutoForecaster.predict_profile`) — the
    peak plan rests on the next few steps, where a level-shift model beats the one best on average
    over the day (Taylor, 30 min ahead near the daily peak: 0.26 against 0.37 kW error)."""
    by_h = getattr(forecaster, "predict_profile", None)
    return by_h(steps) if by_h is not None else forecaster.predict(steps)


class _Series:
    """Step averaging (control thread) and the forecaster (worker thread) of one series."""

    def __init__(self, name: str, step_s: float, max_w: float, clock: Clock, *, peak: bool = False) -> None:
        self.name = name
        self.peak = peak  # the step's highest reading instead of its mean
        self.step_s = step_s
        self.max_w = max_w
        self.clock = clock
        self.pending: collections.deque[tuple[float, float]] = collections.deque(maxlen=_MAX_PENDING)
        self._step: int | None = None
        self._sum = 0.0
        self._n = 0
        self._last_ts: float | None = None
        self._bad: set[str] = set()
        self._good: dict[str, int] = {}
        self.forecaster: Any = None
        self.fed = 0

    def _flag(self, key: str, msg: str, *args: object) -> None:
        self._good.pop(key, None)
        if key not in self._bad:
            self._bad.add(key)
            if not self.peak:  # the same readings as the demand series, which says it already
                logger.warning("site forecast %s: " + msg, self.name, *args)

    def _clear(self, key: str, msg: str) -> None:
        # "recovered" only after a run of good readings, so input that flips between good and
        # bad is reported once, not on every flip
        if key in self._bad:
            self._good[key] = self._good.get(key, 0) + 1
            if self._good[key] >= _RECOVER_AFTER:
                self._bad.discard(key)
                self._good.pop(key, None)
                if not self.peak:
                    logger.info("site forecast %s: recovered, %s", self.name, msg)

    def observe(self, ts: float, value: float) -> None:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            self._flag("nan", "non-finite reading %r dropped", value)
            return
        if value < 0 or value > self.max_w:
            self._flag("range", "reading %.0f W outside [0, %.0f] W dropped", value, self.max_w)
            return
        self._clear("nan", "readings finite")
        self._clear("range", "readings in range")
        if self._last_ts is not None and ts <= self._last_ts:
            if ts < self._last_ts:
                self._flag("clock", "clock went back from %.0f to %.0f; reading dropped", self._last_ts, ts)
            return
        self._clear("clock", "clock moving forward")
        self._last_ts = ts
        step = math.floor(ts / self.step_s)
        if self._step is not None and step != self._step:
            if self._n:
                self.pending.append((self._step * self.step_s, self._sum if self.peak else self._sum / self._n))
            if step > self._step + 1:
                self._flag("jump", "no reading for %.0f s (clock jump or missing data); the forecaster "
                           "bridges or restarts its history", (step - self._step - 1) * self.step_s)
            self._sum, self._n = 0.0, 0
        elif self._step is not None:
            self._clear("jump", "steps continuous")
        self._step = step
        self._sum = max(self._sum, float(value)) if self.peak else self._sum + float(value)
        self._n += 1

    def feed(self) -> int:
        """Feed completed steps to the forecaster (worker thread); returns how many."""
        n = 0
        while self.pending:
            ts, v = self.pending.popleft()
            if self.forecaster is None:
                from agent.forecast.factory import make_forecaster

                self.forecaster = make_forecaster(
                    "auto", step_s=self.step_s, clock=self.clock, nonnegative=True, background=False,
                    candidates=list(CANDIDATES), calib_horizon=12, calib_window=500, select_horizon=1)
                self.forecaster.fit([v], ts)
            else:
                self.forecaster.update([v], ts=ts)
            n += 1
            self.fed += 1
        return n

    def outlook(self, horizons: tuple[float, ...]) -> tuple[float, dict[float, SeriesOutlook]] | None:
        f = self.forecaster
        if f is None:
            return None
        out: dict[float, SeriesOutlook] = {}
        start = math.nan
        for h_s in horizons:
            h = max(1, int(round(h_s / self.step_s)))
            fc = f.predict(h)
            arrays = (fc.point, fc.lower80, fc.upper80)
            if not all(math.isfinite(float(x)) for a in arrays for x in a):
                raise FloatingPointError(f"{fc.model} forecast is not finite")
            start = fc.start_ts
            last = (float(fc.point[-1]), float(fc.lower80[-1]), float(fc.upper80[-1]),
                    float(fc.lower95[-1]), float(fc.upper95[-1]))
            out[h_s] = SeriesOutlook(h_s, float(fc.point.mean()), float(fc.lower80.mean()), float(fc.upper80.mean()),
                                     float(fc.upper80.max()), float(fc.upper80.argmax()) * self.step_s,
                                     fc.model, fc.fallback, last)
        return start, out


class SiteForecaster:
    """Demand (and PV) forecasts of one site from its own history (see the module docstring)."""

    def __init__(self, clock: Clock, *, step_s: float = 300.0, horizons_s: tuple[float, ...] = (300.0, 900.0),
                 has_pv: bool = False, max_w: float = 1e8, min_history: int = 3,
                 profile_s: float = 86400.0) -> None:
        if not (step_s > 0 and math.isfinite(step_s)):
            raise ValueError(f"step_s: must be a positive number of seconds, got {step_s!r}")
        self.clock = clock
        self.step_s = float(step_s)
        self.horizons_s = tuple(float(h) for h in horizons_s)
        self.profile_steps = max(0, int(round(profile_s / self.step_s)))
        self.min_history = int(min_history)
        self.demand = _Series("demand", self.step_s, max_w, clock)
        self.demand_peak = _Series("demand peak", self.step_s, max_w, clock, peak=True)
        self.pv = _Series("pv", self.step_s, max_w, clock) if has_pv else None
        self.outlook: Outlook | None = None
        self.fallback: str | None = "no history yet"
        self._logged_fallback: str | None = None

    def observe(self, ts: float, demand_w: float, pv_w: float | None = None) -> None:
        """The control loop's sample at ``ts`` (cheap; bad values are dropped and logged once)."""
        self.demand.observe(ts, demand_w)
        self.demand_peak.observe(ts, demand_w)
        if self.pv is not None and pv_w is not None:
            self.pv.observe(ts, pv_w)

    def refresh(self) -> Outlook | None:
        """Feed completed steps and forecast (call off the control loop, e.g. in a thread)."""
        now = self.clock.now()
        try:
            self.demand.feed()
            self.demand_peak.feed()
            if self.pv is not None:
                self.pv.feed()
            n = self.demand.forecaster.n_obs if self.demand.forecaster is not None else 0
            if n < self.min_history:
                return self._fail(f"missing history ({n} of {self.min_history} steps)")
            got = self.demand.outlook(self.horizons_s)
            assert got is not None
            start, demand = got
            pv = None
            if self.pv is not None and self.pv.forecaster is not None and self.pv.forecaster.n_obs >= self.min_history:
                pv_got = self.pv.outlook(self.horizons_s)
                pv = pv_got[1] if pv_got is not None else None
            peak_got = self.demand_peak.outlook(self.horizons_s)
            profile = self._profile(pv is not None)
        except Exception as exc:  # noqa: BLE001 - a forecasting fault must never stop control
            if self._logged_fallback != "error":
                logger.exception("site forecast failed; safe control without forecasts")
            self._logged_fallback = "error"
            return self._fail(f"forecast failed: {exc}", log=False)
        self.outlook = Outlook(now, start, self.step_s, demand, pv, n, peak_got[1] if peak_got else None,
                               *(profile or (None, None, None)))
        if self.fallback is not None:
            logger.info("site forecast: ready (%d steps of history; demand %s)", n,
                        ", ".join(f"{int(h)} s {o.model}" for h, o in demand.items()))
        self.fallback = None
        self._logged_fallback = None
        return self.outlook

    def _profile(self, with_pv: bool) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]] | None:
        """Import (demand less PV) per step over ``profile_steps``: point, 80 % lower and upper bound."""
        if self.profile_steps < 2 or self.demand.forecaster is None:
            return None
        d = profile_forecast(self.demand.forecaster, self.profile_steps)
        point = [float(v) for v in d.point]
        lower = [float(v) for v in d.lower80]
        upper = [float(v) for v in d.upper80]
        if with_pv and self.pv is not None and self.pv.forecaster is not None:
            p = profile_forecast(self.pv.forecaster, self.profile_steps)
            point = [a - max(0.0, float(b)) for a, b in zip(point, p.point, strict=True)]
            lower = [a - max(0.0, float(b)) for a, b in zip(lower, p.upper80, strict=True)]
            upper = [a - max(0.0, float(b)) for a, b in zip(upper, p.lower80, strict=True)]
        if not all(math.isfinite(v) for v in point + lower + upper):
            raise FloatingPointError("import profile forecast is not finite")
        return tuple(point), tuple(lower), tuple(upper)

    def _fail(self, reason: str, *, log: bool = True) -> None:
        self.outlook = None
        key = reason.split(" (")[0]
        if log and self._logged_fallback != key:
            logger.warning("site forecast unavailable: %s; safe control without forecasts", reason)
            self._logged_fallback = key
        self.fallback = reason
        return None
