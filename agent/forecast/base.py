"""The forecaster every agent component calls, and the engines behind it.

A :class:`Forecaster` owns what every model needs and no model should reimplement:

- the site's history (cleaned), its step length, its time stamps and, optionally, its clock;
- input repair with documented fallbacks (each logged once on the transition, and "recovered"
  on the way back):

  ===========================  ==============================================================
  bad input                    what happens
  ===========================  ==============================================================
  NaN / inf / gap in a batch   value imputed: one seasonal period earlier if known, else the
                               last good value (short interior gaps in ``fit`` are linearly
                               interpolated); the forecast goes on
  negative demand              with ``nonnegative=True`` (demand, PV) a negative reading is a
                               bad reading: treated like NaN; forecasts are clipped at 0
  constant series              the model is not fitted (scale 0); persistence stands in with
                               ``fallback="constant series"`` until the series moves
  too little history           the longest seasonal naive the history supports (else
                               persistence) stands in, reason in ``Forecast.fallback``, until
                               enough history arrives; then the model is fitted (amortised)
  clock jump forward (``ts``)  up to ``max_gap_steps`` missing steps are imputed; a longer
                               jump restarts the history at the new time (fallback until the
                               model has enough history again)
  clock jump backward / dup    values at or before the last time stamp are dropped
  data stopped (with a clock)  ``predict`` forecasts from "now", skipping the missing steps
  nothing usable at all        :class:`~agent.forecast.errors.InsufficientHistoryError`
  wrong shape / bad horizon    :class:`~agent.forecast.errors.ForecastInputError`
  model raises internally      logged with traceback; persistence stands in
  ===========================  ==============================================================

- prediction intervals from :class:`~agent.forecast.conformal.ConformalCalibrator`, primed
  by a rolling-origin backtest at fit time and then scored online on every new value;
- refits: an engine with ``refit_every`` is refitted on a snapshot of the history either in a
  worker thread (``background=True``, the default; the result is swapped in, caught up, at a
  later ``update``/``predict``) or inline, so ``update`` itself stays O(1)-ish.

An :class:`Engine` is just the numerics: fit on a clean array, update with new clean values,
produce a point forecast, optionally backtest from many origins at once.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from agent.forecast.baselines import Persistence, SeasonalNaive
from agent.forecast.conformal import LEVELS, ConformalCalibrator
from agent.forecast.engine import Engine, EngineFactory, default_periods
from agent.forecast.errors import ForecastInputError, InsufficientHistoryError
from agent.forecast.result import Forecast
from gridswarm.clock import Clock

logger = logging.getLogger(__name__)

_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """One shared worker thread for heavy refits (a gateway has few cores)."""
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forecast-refit")
        return _EXECUTOR




def impute(y: np.ndarray, periods: Sequence[int], start: int = 0, interp_max: int = 0) -> int:
    """Fill NaNs in ``y[start:]`` in place; return how many were filled.

    Runs of at most ``interp_max`` NaNs with good values on both sides are interpolated
    linearly; other NaNs take the value one seasonal period earlier (longest period first) or
    else the last good value. Leading NaNs with nothing before them stay NaN.
    """
    bad = np.flatnonzero(np.isnan(y[start:])) + start
    if len(bad) == 0:
        return 0
    filled = 0
    n = len(y)
    i = 0
    while i < len(bad):
        a = bad[i]
        j = i
        while j + 1 < len(bad) and bad[j + 1] == bad[j] + 1:
            j += 1
        b = bad[j] + 1  # run is [a, b)
        if interp_max and b - a <= interp_max and a > 0 and b < n and not np.isnan(y[a - 1]):
            y[a:b] = np.interp(np.arange(a, b), [a - 1, b], [y[a - 1], y[b]])
            filled += b - a
        else:
            for k in range(a, b):
                for p in sorted(periods, reverse=True):
                    if k - p >= 0 and not np.isnan(y[k - p]):
                        y[k] = y[k - p]
                        break
                else:
                    if k > 0 and not np.isnan(y[k - 1]):
                        y[k] = y[k - 1]
                if not np.isnan(y[k]):
                    filled += 1
        i = j + 1
    return filled


class Forecaster:
    """History, input repair, fallbacks, intervals and refits around one :class:`Engine`.

    ``step_s``: step length in seconds. ``seasonal_periods``: season lengths in steps (default
    daily and weekly when the step divides a day). ``nonnegative``: the series cannot go below
    zero (demand, PV output) — negative readings are bad readings and forecasts are clipped.
    ``clock``: lets ``predict`` notice that data stopped arriving. ``max_gap_steps``: the
    longest clock jump bridged by imputation (default one longest season). ``calib_horizon`` /
    ``calib_window``: horizons and residual window of the conformal calibrator.
    ``background``: run heavy refits in a worker thread.
    """

    def __init__(
        self,
        engine_factory: EngineFactory,
        step_s: float,
        seasonal_periods: Sequence[int] | None = None,
        *,
        nonnegative: bool = True,
        clock: Clock | None = None,
        max_gap_steps: int | None = None,
        calib_horizon: int = 96,
        calib_window: int = 1000,
        calib_stride: int = 1,
        max_history: int | None = None,
        background: bool = True,
        name: str | None = None,
    ) -> None:
        if not (step_s > 0 and math.isfinite(step_s)):
            raise ForecastInputError(f"step_s must be a positive number of seconds, got {step_s}")
        self.step_s = float(step_s)
        periods = default_periods(step_s) if seasonal_periods is None else tuple(seasonal_periods)
        if any(int(p) < 2 for p in periods):
            raise ForecastInputError(f"seasonal periods must be >= 2 steps, got {periods}")
        self.seasonal_periods: tuple[int, ...] = tuple(sorted(int(p) for p in periods))
        self.nonnegative = nonnegative
        self.clock = clock
        longest = max(self.seasonal_periods, default=96)
        self.max_gap_steps = longest if max_gap_steps is None else int(max_gap_steps)
        self.calib_horizon = int(calib_horizon)
        self.calib_window = int(calib_window)
        self.calib_stride = max(1, int(calib_stride))
        self.max_history = max_history or max(4 * longest + self.calib_window, 4000)
        self.background = background
        self._factory = engine_factory
        self._engine: Engine = engine_factory()
        self.name = name or self._engine.name
        self.calibrator = ConformalCalibrator(self.calib_horizon, self.calib_window)
        self._y = np.empty(0)
        self._abs0 = 0  # absolute index of self._y[0]
        self._ts0 = 0.0  # time stamp of absolute index 0
        self._fitted = False
        self._active: Engine | None = None  # the engine producing forecasts
        self._fallback_reason: str | None = None
        self._since_refit = 0
        self._pending_refit: Future[Engine] | None = None
        self._refit_from = 0  # absolute length of history the pending refit saw
        self._refit_abs0 = 0
        self._warned: set[str] = set()
        self._constant_value: float | None = None

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> str:
        """Name of the model that currently produces forecasts."""
        if self._fallback_reason is None or self._active is None:
            return self.name
        return f"{self._active.name} (fallback for {self.name})"

    @property
    def fallback_reason(self) -> str | None:
        return self._fallback_reason

    @property
    def n_obs(self) -> int:
        """Observations seen since the history (re)started."""
        return self._abs0 + len(self._y)

    @property
    def last_ts(self) -> float:
        """Time stamp of the last observation."""
        return self._ts0 + (self.n_obs - 1) * self.step_s

    @property
    def history(self) -> np.ndarray:
        """The retained, cleaned history (a copy)."""
        return self._y.copy()

    @property
    def engine(self) -> Engine:
        return self._engine

    # ------------------------------------------------------------------ logging helpers
    def _warn(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning("forecast %s: " + msg, self.name, *args)

    def _recovered(self, key: str, msg: str, *args: object) -> None:
        if key in self._warned:
            self._warned.discard(key)
            logger.info("forecast %s: recovered, " + msg, self.name, *args)

    # ------------------------------------------------------------------ input repair
    def _as_array(self, values: Any) -> np.ndarray:
        try:
            arr = np.asarray(values, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ForecastInputError(f"values must be numbers: {exc}") from exc
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1:
            raise ForecastInputError(f"values must be one-dimensional, got shape {arr.shape}")
        return arr.copy()

    def _mark_bad(self, arr: np.ndarray) -> np.ndarray:
        nonfinite = ~np.isfinite(arr)
        if nonfinite.any():
            self._warn("nan", "%d missing/non-finite value(s); imputing from the season or the "
                       "last good value", int(nonfinite.sum()))
            arr[nonfinite] = np.nan
        else:
            self._recovered("nan", "values are finite again")
        if self.nonnegative:
            neg = arr < 0
            if neg.any():
                self._warn("neg", "%d negative value(s) in a non-negative series (min %.3g); "
                           "treated as missing", int(neg.sum()), float(np.nanmin(arr)))
                arr[neg] = np.nan
            else:
                self._recovered("neg", "no negative values")
        return arr

    # ------------------------------------------------------------------ fit
    def fit(self, values: Any, start_ts: float = 0.0) -> Forecaster:
        """Fit on ``values`` (oldest first), the first of which is at ``start_ts`` (epoch s)."""
        arr = self._mark_bad(self._as_array(values))
        good = np.flatnonzero(~np.isnan(arr))
        if len(good) == 0:
            raise InsufficientHistoryError(
                f"no usable value among {len(arr)} (all missing, non-finite or negative)")
        first = int(good[0])
        if first:
            self._warn("lead", "dropped %d leading missing value(s)", first)
        arr = arr[first:]
        impute(arr, self.seasonal_periods, interp_max=4)
        self._y = arr[-self.max_history:]
        self._abs0 = len(arr) - len(self._y)
        self._ts0 = float(start_ts) + first * self.step_s
        self.calibrator.clear()
        self._fitted = True
        self._cancel_refit()
        self._refit_inline()
        return self

    def _cancel_refit(self) -> None:
        if self._pending_refit is not None:
            self._pending_refit.cancel()
            self._pending_refit = None

    def _unusable_reason(self, y: np.ndarray, engine: Engine) -> str | None:
        need = engine.min_history()
        if len(y) < need:
            return f"too little history ({len(y)} < {need} steps) for {engine.name}"
        tail = y[-min(len(y), max(self.seasonal_periods, default=48)):]
        if np.ptp(tail) == 0.0:
            return "constant series"
        return None

    def _fallback_engine(self, y: np.ndarray, reason: str) -> Engine:
        if reason != "constant series":
            for p in sorted(self.seasonal_periods, reverse=True):
                if len(y) >= p:
                    return SeasonalNaive(p)
        return Persistence()

    def _set_fallback(self, reason: str) -> None:
        fb = self._fallback_engine(self._y, reason)
        fb.fit(self._y, self._ts0)
        if self._fallback_reason != reason:
            # a short history is the normal start of every series, not a fault: INFO
            expected = reason.startswith("too little history") or (reason == "constant series" and len(self._y) < 3)
            logger.log(logging.INFO if expected else logging.WARNING, "forecast %s: %s; %s stands in",
                       self.name, reason, fb.name)
        self._fallback_reason = reason
        self._active = fb
        self._constant_value = float(self._y[-1]) if reason == "constant series" else None
        self._calibrate(fb)

    def _refit_inline(self) -> None:
        engine = self._factory()
        engine.warm_from(self._engine)
        reason = self._unusable_reason(self._y, engine)
        if reason is not None:
            self._set_fallback(reason)
            return
        try:
            engine.fit(self._y, self._ts0 + self._abs0 * self.step_s)
        except Exception as exc:  # a model bug must not take the agent down
            logger.exception("forecast %s: fit failed", self.name)
            self._set_fallback(f"fit failed: {exc}")
            return
        self._install(engine)
        self._calibrate(engine)

    def _install(self, engine: Engine) -> None:
        was = self._fallback_reason
        self._engine = engine
        self._active = engine
        self._fallback_reason = None
        self._constant_value = None
        self._since_refit = 0
        if was is not None:
            logger.info("forecast %s: recovered, model fitted on %d steps (was: %s)",
                        self.name, len(self._y), was)

    def _calibrate(self, engine: Engine, y: np.ndarray | None = None) -> None:
        """Prime the calibrator with a rolling-origin backtest over the end of the history.

        ``y`` is the history the engine was fitted on (default: all of it).
        """
        y = self._y if y is None else y
        d = np.diff(y[-min(len(y), 2 * self.calib_window):])
        self.calibrator.fallback_sigma = float(np.std(d)) if len(d) > 1 else 0.0
        H = self.calib_horizon
        first = max(engine.min_history() - 1, len(y) - self.calib_window - H, 0)
        origins = np.arange(first, len(y) - 1)
        if len(origins) == 0:
            return
        try:
            fc = engine.backtest(y, origins, H)
        except Exception:
            logger.exception("forecast %s: backtest failed; intervals start wide", self.name)
            return
        if fc is None:
            return
        idx = origins[:, None] + np.arange(1, H + 1)[None, :]
        actual = np.where(idx < len(y), y[np.minimum(idx, len(y) - 1)], np.nan)
        self.calibrator.clear()
        self.calibrator.add_backtest(fc, actual)

    # ------------------------------------------------------------------ update
    def update(self, new_values: Any, ts: float | None = None) -> None:
        """Append observations (oldest first); ``ts`` is the time stamp of the first one.

        Cheap and never raises for bad values (see the module table); raises
        :class:`ForecastInputError` only for a wrong shape.
        """
        arr = self._as_array(new_values)
        if not self._fitted:
            try:
                self.fit(arr, 0.0 if ts is None else ts)
            except InsufficientHistoryError as exc:
                self._warn("empty", "update before any usable value: %s", exc)
            return
        if ts is not None:
            arr = self._align(arr, float(ts))
            if arr is None:
                return
        if len(arr) == 0:
            return
        arr = self._mark_bad(arr)
        try:
            self._append(arr)
        except Exception as exc:
            logger.exception("forecast %s: update failed", self.name)
            self._set_fallback(f"update failed: {exc}")

    def _align(self, arr: np.ndarray, ts: float) -> np.ndarray | None:
        expected = self.last_ts + self.step_s
        lag = (ts - expected) / self.step_s
        if abs(lag) < 0.5:
            self._recovered("clock", "time stamps continuous again")
            return arr
        if lag < 0:
            drop = min(len(arr), int(math.ceil(-lag - 0.5)))
            self._warn("clock", "clock went back by %.0f s; dropping %d value(s) at or before "
                       "the last time stamp", -lag * self.step_s, drop)
            return arr[drop:]
        k = int(round(lag))
        if k <= self.max_gap_steps:
            self._warn("gap", "gap of %d step(s) before ts=%.0f; imputing", k, ts)
            return np.concatenate([np.full(k, np.nan), arr])
        logger.warning("forecast %s: clock jumped %.0f s (> %d steps); restarting history at "
                       "ts=%.0f", self.name, lag * self.step_s, self.max_gap_steps, ts)
        good = arr[np.isfinite(arr)]
        if len(good) == 0:
            return None
        self._fallback_reason = None
        self.fit(arr, ts)
        return None

    def _append(self, arr: np.ndarray) -> None:
        self._finish_refit()
        n_before = len(self._y)
        y = np.concatenate([self._y, arr])
        impute(y, self.seasonal_periods, start=n_before)
        if np.isnan(y[n_before:]).any():  # nothing to impute from: keep the last value
            y[n_before:] = np.where(np.isnan(y[n_before:]), y[n_before - 1], y[n_before:])
        self._recovered("gap", "no gap")
        new = y[n_before:]
        for i, v in enumerate(new):
            # score pending forecasts, feed the engine one value at a time so the calibrator
            # sees forecasts made at every origin (as the agent would)
            abs_i = self._abs0 + n_before + i
            self.calibrator.record_actual(abs_i, float(v))
            yy = y[: n_before + i + 1]
            assert self._active is not None
            if self._active is self._engine or self._fallback_reason is None:
                self._engine.update(yy, 1)
            else:
                self._active.update(yy, 1)
            if abs_i % self.calib_stride == 0:
                self.calibrator.add_forecast(abs_i, self._active.point(yy, self.calib_horizon))
        self._since_refit += len(new)
        if len(y) > 2 * self.max_history:
            cut = len(y) - self.max_history
            y = y[cut:]
            self._abs0 += cut
        self._y = y
        self._maybe_refit(new)

    def _maybe_refit(self, new: np.ndarray) -> None:
        if self._fallback_reason is not None:
            if self._fallback_reason == "constant series":
                if np.all(new == self._constant_value):
                    return
            elif len(self._y) < self._engine.min_history():
                return
            self._schedule_refit()
            return
        every = self._engine.refit_every
        if every is not None and self._since_refit >= every:
            self._schedule_refit()

    def _schedule_refit(self) -> None:
        if self._pending_refit is not None:
            return
        self._since_refit = 0
        if not self.background:
            self._refit_inline()
            return
        snapshot = self._y.copy()
        ts0 = self._ts0 + self._abs0 * self.step_s
        self._refit_from = self.n_obs
        self._refit_abs0 = self._abs0
        factory = self._factory
        previous = self._engine
        reason = self._unusable_reason(snapshot, factory())

        if reason is not None:
            if reason != self._fallback_reason:
                self._set_fallback(reason)
            return

        def work() -> Engine:
            eng = factory()
            eng.warm_from(previous)
            eng.fit(snapshot, ts0)
            return eng

        self._pending_refit = _executor().submit(work)

    def _finish_refit(self) -> None:
        fut = self._pending_refit
        if fut is None or not fut.done():
            return
        self._pending_refit = None
        try:
            eng = fut.result()
        except Exception as exc:
            logger.exception("forecast %s: background refit failed", self.name)
            if self._fallback_reason is not None:
                self._set_fallback(f"fit failed: {exc}")
            return
        caught_up = self.n_obs - self._refit_from
        n = len(self._y)
        if self._fallback_reason is not None and self._abs0 == self._refit_abs0:
            # first real model after a fallback: prime its intervals on what it was fitted on
            self._calibrate(eng, self._y[: n - caught_up])
        for k in range(caught_up, 0, -1):  # replay what arrived while the refit ran
            eng.update(self._y[: n - k + 1], 1)
        self._install(eng)

    def wait_refit(self, timeout: float | None = None) -> None:
        """Block until a background refit finishes and swap it in (tests, batch tools)."""
        if self._pending_refit is not None:
            try:
                self._pending_refit.result(timeout=timeout)
            except Exception:  # reported by _finish_refit
                pass
            self._finish_refit()

    # ------------------------------------------------------------------ predict
    def predict(self, horizon_steps: int) -> Forecast:
        """Point forecast and 80 %/95 % intervals for the next ``horizon_steps`` steps."""
        if not isinstance(horizon_steps, int | np.integer) or horizon_steps < 1:
            raise ForecastInputError(f"horizon_steps must be a positive int, got {horizon_steps!r}")
        if not self._fitted:
            raise InsufficientHistoryError("predict() before fit(): no history to forecast from")
        self._finish_refit()
        H = int(horizon_steps)
        skip = self._stale_steps()
        reason = self._fallback_reason
        try:
            assert self._active is not None
            pt = np.asarray(self._active.point(self._y, H + skip), dtype=float)[skip:]
            if pt.shape != (H,) or not np.all(np.isfinite(pt)):
                raise FloatingPointError("model produced a non-finite forecast")
            engine_name = self._active.name
        except Exception as exc:
            logger.exception("forecast %s: predict failed; persistence stands in", self.name)
            pt = np.full(H, float(self._y[-1]))
            reason = f"predict failed: {exc}"
            engine_name = "persistence"
        bands = []
        for level in LEVELS:
            lo, hi = self.calibrator.offsets(H, level, skip)
            bands.append((pt + lo, pt + hi))
        (l80, u80), (l95, u95) = bands
        if self.nonnegative:
            pt, l80, u80, l95, u95 = (np.maximum(a, 0.0) for a in (pt, l80, u80, l95, u95))
        model = self.name if reason is None else f"{engine_name} (fallback for {self.name})"
        if skip and reason is None:
            reason = f"stale data: {skip} step(s) missing before now"
        return Forecast(pt, l80, u80, l95, u95, model=model, step_s=self.step_s,
                        start_ts=self.last_ts + (1 + skip) * self.step_s, fallback=reason)

    def _stale_steps(self) -> int:
        if self.clock is None:
            return 0
        now = self.clock.now()
        current = math.floor((now - self._ts0) / self.step_s + 1e-9)  # step containing now
        skip = current - self.n_obs
        if skip > 0:
            self._warn("stale", "no data for %d step(s) before now; forecasting from now", skip)
            return skip
        if now < self.last_ts:
            self._warn("behind", "clock (%.0f) is behind the data (%.0f); forecasting from "
                       "the last observation", now, self.last_ts)
        else:
            self._recovered("stale", "data is current")
            self._recovered("behind", "clock caught up")
        return 0
