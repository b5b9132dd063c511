"""The peak threshold, planned from the demand forecast and the flywheels' energy (receding horizon).

A flywheel sized at a few percent of the peak can only shave the top of a peak: how far down
depends on how much energy the whole excursion above the threshold needs. Shaving too low empties
the flywheels on the way up and the top goes through; too high wastes what they hold. Every
planner step (:class:`PeakPlanner`, called by :mod:`agent.control.planner`; the benchmark
``scripts/bench_site_control.py`` calls the same object):

1. the forecast of site import over the next hours is **anchored** on the last metered step (the
   error of that step's forecast, decaying by ``anchor_decay`` per step, is added to every step:
   a level error persists for a while, a shape error does not);
2. the **shave threshold** is the lowest level ``T`` at which the flywheels, starting from the
   energy they hold now, can cover every step above ``T`` in that forecast while recharging only
   below the charge ceiling (:func:`lowest_threshold`: a greedy simulation of the stores — shave
   above, recharge below at full power, standing losses — is feasible or not, and feasibility is
   monotone in ``T``, so a bisection finds it);
3. the threshold is never below the peak already **realised** in the billing window (shaving
   below a peak that has happened saves nothing), so it only ratchets up within a window;
4. the **charge ceiling** (flywheels recharge only while import is below it) is the realised peak,
   or the threshold planned on the forecast's *lower* 80 % bound when that is higher, never above
   the shave threshold: charging up to a forecast that turns out too high would make a new peak.

Re-planned every step with fresh forecasts and the energy actually left, the threshold rises
during an excursion that is bigger than forecast and spreads what is left over the rest of it.
The forecast is *not* anchored by default (``anchor_decay=0``): the profile's first steps come
from persistence or a level-shift model (:func:`agent.forecast.online.profile_forecast`), which
already start from the last step, and adding the last step's error again counted it twice
(Taylor, on the per-horizon profile: 39 % of the optimum's reduction anchored at 0.9, 43 %
without).

The plan is **trusted only when the forecast is accurate enough for it**: a flywheel of a few
percent shaves about as much as a noisy site's forecast misses by, and a threshold planned on
such a forecast shaves less than no plan at all (``scripts/bench_site_control.py``: SimBench
household and commercial profiles at 15 min). The planner keeps a running mean of the absolute
error of the last step's forecast; while it is above ``trust_share`` of the flywheels' power the
threshold is the realised peak alone (last round's policy, which does better on those traces),
raised to the **learned floor** and to the forecast's **lower bound** (6.) when those are higher:

5. the learned floor is a quantile (``prior_quantile``, 0.75) of the lowest thresholds the
   flywheels, full, could have held each of the last ``prior_days`` (7) days to — the site's own
   metered import with storage idle (:meth:`PeakPlanner.observe`), hindsight on past days only.
   A level the flywheels could not have defended on most recent days is not worth defending
   now: the ratchet alone starts every billing window from its first step's import, empties
   the flywheels on the first ramp above it and meets the window's peak empty (SimBench G1-A and
   LV urban 6, 30-day windows: 44 and 71 % of the optimum's reduction with the ratchet alone, 53
   and 79 % with the floor). It applies only while the forecast is not trusted (on Taylor, where
   the plan is, the floor from last week's days is often above this week's optimum).
6. while the forecast is not trusted it still bounds the threshold from **below**: the lowest
   threshold the flywheels, with the energy they hold now, could hold the forecast's 80 % *lower*
   bound to (:meth:`PeakPlanner.lower_bound`, the level the trusted plan's charge ceiling uses).
   Even a day as low as that bound needs this threshold, so import below it is not worth
   spending stored energy on: shaving it would empty the flywheels on a ramp whose top is
   still to come. The point forecast misses by as much as the flywheels shave, the lower
   bound rarely overshoots (``scripts/bench_site_control.py``, 11 windows: G1-A 53 -> 58 % of
   the optimum's reduction, Taylor 40 -> 43 %, H0-A unchanged at 94 %, LV urban 6 79 -> 79 %
   (78.7 %); planning on the point forecast instead, or on a band between the lower bound and
   the point, did worse on every SimBench trace).

Units W, Wh, s; import is positive.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PeakPlan", "PeakPlanner", "StoreBudget", "anchored", "lowest_threshold"]


@dataclass(frozen=True, slots=True)
class StoreBudget:
    """The flywheels taken together (energies above their floors)."""

    power_w: float  # discharge and charge power at the terminals
    energy_wh: float  # stored energy above the floor now
    capacity_wh: float  # usable energy (ceiling minus floor)
    efficiency: float = 0.95  # one way
    loss_per_h: float = 0.0  # standing losses, share of stored energy per hour

    def __post_init__(self) -> None:
        for name in ("power_w", "energy_wh", "capacity_wh", "efficiency", "loss_per_h"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"StoreBudget.{name}: must be a finite number >= 0, got {v!r}")
        if not 0 < self.efficiency <= 1 or self.loss_per_h >= 1:
            raise ValueError("StoreBudget: efficiency must be in (0, 1] and loss_per_h below 1")


@dataclass(frozen=True, slots=True)
class PeakPlan:
    shave_above_w: float  # import above this is a peak the flywheels cover
    charge_below_w: float  # flywheels recharge only while import is below this
    planned_w: float | None  # the forecast-planned threshold (None: none planned this step)
    lower_w: float | None = None  # untrusted forecast: the threshold its 80 % lower bound needs (6.)


def _feasible(x: Sequence[float], T: float, ceil: float, b: StoreBudget, h: float, keep: float) -> bool:
    e = b.energy_wh
    cap = b.capacity_wh
    for v in x:
        if v > T:
            d = v - T
            if d > b.power_w:
                return False
            e -= d * h / b.efficiency
            if e < -1e-6:
                return False
        elif ceil > v:
            e = min(cap, e + min(b.power_w, ceil - v) * h * b.efficiency)
        e *= keep
    return True


def lowest_threshold(x: Sequence[float], step_s: float, budget: StoreBudget, *, floor_w: float = 0.0,
                     charge_ceiling_w: float | None = None, tol_w: float = 1.0) -> float:
    """Lowest ``T >= floor_w`` the stores can hold ``x`` (import per step, the first being now) to,
    recharging only below ``min(T, charge_ceiling_w)``. ``max(x)`` when nothing can be shaved."""
    xs = [float(v) for v in x]
    if not xs or not all(math.isfinite(v) for v in xs):
        raise ValueError("lowest_threshold: needs a non-empty finite forecast")
    if not (step_s > 0 and math.isfinite(step_s)):
        raise ValueError(f"lowest_threshold: step_s must be positive, got {step_s!r}")
    h = step_s / 3600.0
    keep = (1.0 - budget.loss_per_h) ** h
    hi = max(xs)
    if hi <= floor_w:
        return floor_w
    lo = max(floor_w, hi - budget.power_w)

    def ok(T: float) -> bool:
        ceil = T if charge_ceiling_w is None else min(T, charge_ceiling_w)
        return _feasible(xs, T, ceil, budget, h, keep)

    if ok(lo):
        return lo
    for _ in range(40):
        if hi - lo <= tol_w:
            break
        mid = 0.5 * (lo + hi)
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def anchored(point: Sequence[float], error_w: float, decay: float) -> list[float]:
    """``point`` (per step from now) plus the error of the last forecast step (measured less
    forecast), decaying by ``decay`` per step (a level error persists, a shape error does not)."""
    return [max(0.0, float(v) + error_w * decay ** (k + 1)) for k, v in enumerate(point)]


class PeakPlanner:
    """The shave threshold and charge ceiling of one site, step by step (module docstring).

    ``window_s`` is the billing window of the peak (a day by default; a demand charge's month
    works the same way); ``limit_w`` the grid connection's import limit (the threshold never
    goes above it)."""

    def __init__(self, step_s: float, *, window_s: float = 86400.0, anchor_decay: float = 0.0,
                 limit_w: float | None = None, trust_share: float = 0.1, error_alpha: float = 0.05,
                 prior_days: int = 7, prior_quantile: float = 0.75) -> None:
        if not (step_s > 0 and math.isfinite(step_s)) or not (window_s > 0 and math.isfinite(window_s)):
            raise ValueError("PeakPlanner: step_s and window_s must be positive")
        if not 0.0 <= anchor_decay <= 1.0:
            raise ValueError(f"PeakPlanner: anchor_decay must be in [0, 1], got {anchor_decay!r}")
        if not (isinstance(prior_days, int) and prior_days >= 0) or not 0.0 <= prior_quantile <= 1.0:
            raise ValueError("PeakPlanner: prior_days must be an int >= 0 and prior_quantile in [0, 1]")
        self.day_steps = max(1, int(round(86400.0 / step_s)))
        self.prior_days = prior_days
        self.prior_quantile = float(prior_quantile)
        # metered import with storage idle, one value per step (the learned floor's history)
        self._history: collections.deque[float] = collections.deque(maxlen=self.day_steps * prior_days)
        self._last_observed: float | None = None
        self._floor_window: int | None = None  # the window the learned floor was computed for
        self.floor_w = 0.0  # the learned floor (module docstring, 5.)
        self.step_s = float(step_s)
        self.window_s = float(window_s)
        self.anchor_decay = float(anchor_decay)
        self.limit_w = limit_w
        self.trust_share = float(trust_share)
        self.error_alpha = float(error_alpha)
        self.mean_abs_error_w: float | None = None  # running mean of |last step - its forecast|
        self.realised_w = 0.0
        self._window: int | None = None

    def roll(self, now: float) -> None:
        """Start a new billing window when ``now`` is past the current one."""
        w = math.floor(now / self.window_s)
        if w != self._window:
            self._window, self.realised_w = w, 0.0

    def record(self, ts: float, import_w: float) -> None:
        """A metered step's mean import (after storage) that started at ``ts``."""
        if not math.isfinite(import_w):
            return
        self.roll(ts)
        self.realised_w = max(self.realised_w, import_w)

    def observe(self, ts: float, import_w: float) -> None:
        """A metered step's mean import with storage idle (demand less PV) that started at ``ts``:
        the history the learned floor is computed from. Non-finite, absurd (above 1e9 W) or
        repeated/earlier steps are ignored; a gap longer than a day restarts the history."""
        if not (isinstance(import_w, (int, float)) and math.isfinite(import_w) and abs(import_w) < 1e9):
            return
        if not math.isfinite(ts):
            return
        last = self._last_observed
        if last is not None:
            if ts <= last:
                return
            if ts - last > 86400.0 + self.step_s:
                self._history.clear()
            else:
                # a short gap: the missing steps as the last value, so days stay aligned
                for _ in range(min(self.day_steps, int(round((ts - last) / self.step_s)) - 1)):
                    self._history.append(self._history[-1] if self._history else float(import_w))
        self._last_observed = ts
        self._history.append(float(import_w))

    def learned_floor(self, budget: StoreBudget) -> float:
        """``prior_quantile`` of the lowest thresholds a full store (``budget``'s capacity) could
        have held each of the last whole days of history to (0 without a whole day)."""
        h = list(self._history)
        days = len(h) // self.day_steps
        if days == 0 or budget.power_w <= 0 or budget.capacity_wh <= 0:
            return 0.0
        full = StoreBudget(budget.power_w, budget.capacity_wh, budget.capacity_wh, budget.efficiency,
                           budget.loss_per_h)
        n = len(h)
        lows = sorted(lowest_threshold(h[n - (i + 1) * self.day_steps:n - i * self.day_steps], self.step_s, full)
                      for i in range(days))
        # linear interpolation between order statistics (numpy's default quantile)
        pos = self.prior_quantile * (len(lows) - 1)
        i = int(math.floor(pos))
        j = min(i + 1, len(lows) - 1)
        return lows[i] + (pos - i) * (lows[j] - lows[i])

    def lower_bound(self, budget: StoreBudget | None, point: Sequence[float] | None,
                    lower: Sequence[float] | None) -> float | None:
        """The lowest threshold the stores, with the energy they hold now and recharging only below
        the realised peak (as they do while the forecast is not trusted), could hold the forecast's
        80 % *lower* bound to (never below the realised peak); None without a usable forecast.
        Even a day as low as that bound needs this threshold, so import below it is not worth
        spending stored energy on (module docstring, 6.)."""
        if (budget is None or budget.power_w <= 0 or lower is None or len(lower) < 2
                or (point is not None and len(point) != len(lower))):
            return None
        lo = [float(v) for v in lower]
        if not all(math.isfinite(v) for v in lo):
            return None
        return lowest_threshold([max(0.0, v) for v in lo], self.step_s, budget, floor_w=self.realised_w,
                                charge_ceiling_w=self.realised_w)

    def start_window(self, ts: float) -> None:
        """Start the billing window containing ``ts`` now (nothing realised yet)."""
        self._window, self.realised_w = math.floor(ts / self.window_s), 0.0

    def plan(self, now: float, budget: StoreBudget | None, point: Sequence[float] | None = None,
             lower: Sequence[float] | None = None, error_w: float = 0.0) -> PeakPlan | None:
        """This step's plan. ``point``/``lower``: the forecast of import per step from now and its
        80 % lower bound; ``error_w``: the last metered step's import less its forecast. Without a
        forecast or stores the threshold is the realised peak (None when nothing is realised yet)."""
        self.roll(now)
        realised = self.realised_w
        cap = math.inf if self.limit_w is None else self.limit_w
        if not math.isfinite(error_w):
            error_w = 0.0
        elif error_w != 0.0:
            a = abs(error_w)
            m = self.mean_abs_error_w
            self.mean_abs_error_w = a if m is None else m + self.error_alpha * (a - m)
        trusted = (budget is not None and self.mean_abs_error_w is not None
                   and self.mean_abs_error_w <= self.trust_share * budget.power_w)
        usable = (trusted and budget is not None and budget.power_w > 0 and point is not None and len(point) > 1
                  and all(math.isfinite(float(v)) for v in point))
        if not usable:
            if realised <= 0:
                return None
            if budget is not None and self._floor_window != self._window:
                # once per billing window, from the last days at its first unplanned step (not
                # again mid-window: a floor that moved with the window's own days would chase them)
                self._floor_window, self.floor_w = self._window, self.learned_floor(budget)
            thr = max(realised, self.floor_w if self.prior_days else 0.0)
            low = self.lower_bound(budget, point, lower)
            thr = min(max(thr, low if low is not None else 0.0), cap)
            return PeakPlan(thr, min(realised, thr), None, low)
        assert budget is not None and point is not None
        f = anchored(point, error_w, self.anchor_decay)
        ceil = realised
        if lower is not None and len(lower) == len(point) and all(math.isfinite(float(v)) for v in lower):
            fl = anchored(lower, error_w, self.anchor_decay)
            ceil = max(ceil, lowest_threshold(fl, self.step_s, budget, floor_w=realised))
        planned = lowest_threshold(f, self.step_s, budget, floor_w=realised, charge_ceiling_w=ceil)
        thr = min(max(realised, planned), cap)
        return PeakPlan(thr, min(ceil, thr), planned)
