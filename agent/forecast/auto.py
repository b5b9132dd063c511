"""Automatic model selection on the site's own recent history, for the horizon that is asked.

:class:`AutoForecaster` runs every candidate side by side (they are cheap online). ``predict(H)``
uses the candidate with the lowest mean absolute error over horizons ``1..H`` on its most recent
``select_window`` forecasts: a 5-minute question and a 24-hour question may get different
models (persistence is hard to beat one step ahead, a seasonal model a day ahead). ``chosen``
is the choice for ``select_horizon`` (one hour by default). The errors are the same residuals the conformal calibrator keeps:
first a rolling-origin backtest over the end of the history (at ``fit``), then every forecast
scored as the actual values arrive. It re-selects every ``reselect_every`` steps and logs its
choice (INFO) whenever the choice changes, with every candidate's error, so an operator can
see why. A challenger must beat the current choice by ``switch_margin`` (3 %) to replace it,
over the window and over each half of it, so near-equal models do not flap and a lucky
few days do not switch the model (:meth:`AutoForecaster._beats`).

The forecast it returns is the chosen candidate's, intervals included, with
``model="auto:<name>"``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.forecast.base import Forecaster, default_periods
from agent.forecast.baselines import Persistence
from agent.forecast.errors import ForecastError, ForecastInputError, InsufficientHistoryError
from agent.forecast.registry import MODEL_NAMES, engine_factory
from agent.forecast.result import Forecast

logger = logging.getLogger(__name__)


class AutoForecaster(Forecaster):
    """A forecaster that delegates to the candidate doing best on recent history."""

    def __init__(self, step_s: float, seasonal_periods: Sequence[int] | None = None, *,
                 candidates: Sequence[str] | None = None, select_horizon: int | None = None,
                 select_window: int | None = None, reselect_every: int | None = None,
                 switch_margin: float = 0.03, **kw: Any) -> None:
        super().__init__(Persistence, step_s, seasonal_periods, name="auto", **kw)
        periods = self.seasonal_periods
        names = list(candidates) if candidates is not None else _default_candidates(periods)
        steps_per_hour = max(1, int(round(3600 / self.step_s)))
        self.select_horizon = select_horizon or steps_per_hour
        day = int(round(86400 / self.step_s)) if default_periods(step_s) else 96
        self.select_window = select_window or 7 * day
        self.reselect_every = reselect_every or day
        self.switch_margin = switch_margin
        self.candidates: dict[str, Forecaster] = {}
        for name in names:
            try:
                factory = engine_factory(name, step_s, periods)
                factory()  # fails early when e.g. a model file is missing
            except ForecastError as exc:
                logger.warning("forecast auto: candidate %s unavailable: %s", name, exc)
                continue
            self.candidates[name] = Forecaster(factory, step_s, periods, name=name, **kw)
        if not self.candidates:
            raise ForecastInputError("auto: no usable candidate model")
        self.chosen: str | None = None
        self.scores: dict[str, float] = {}
        self._by_h: dict[int, str] = {}  # horizon -> choice, kept between reselections (hysteresis)
        self._scored: dict[int, dict[str, float]] = {}  # horizon -> its scores, since the last reselection
        self._steps = 0

    # ------------------------------------------------------------------ delegation
    @property
    def model(self) -> str:
        return f"auto:{self.chosen}" if self.chosen else "auto"

    @property
    def _current(self) -> Forecaster:
        if self.chosen is None:
            raise InsufficientHistoryError("predict() before fit(): no history to forecast from")
        return self.candidates[self.chosen]

    @property
    def n_obs(self) -> int:
        return self._current.n_obs if self.chosen else 0

    @property
    def last_ts(self) -> float:
        return self._current.last_ts

    @property
    def history(self) -> Any:
        return self._current.history

    def fit(self, values: Any, start_ts: float = 0.0) -> AutoForecaster:
        fitted: dict[str, Forecaster] = {}
        first_error: ForecastError | None = None
        for name, f in self.candidates.items():
            try:
                f.fit(values, start_ts)
                fitted[name] = f
            except ForecastInputError as exc:  # the same for every candidate: re-raise below
                first_error = first_error or exc
        if not fitted:
            assert first_error is not None
            raise first_error
        self._fitted = True
        self._steps = 0
        self._select(initial=True)
        return self

    def update(self, new_values: Any, ts: float | None = None) -> None:
        if self.chosen is None:
            self.fit(new_values, 0.0 if ts is None else ts)
            return
        for f in self.candidates.values():
            f.update(new_values, ts)
        self._steps += len(Forecaster._as_array(self, new_values))
        if self._steps >= self.reselect_every:
            self._steps = 0
            self._select()

    def predict(self, horizon_steps: int) -> Forecast:
        name = self.choice_for(horizon_steps) if isinstance(horizon_steps, int) and horizon_steps >= 1 else None
        f = self.candidates[name] if name is not None else self._current
        fc = f.predict(horizon_steps)
        # the scores the choice was made on (kept until the next reselection: scoring every
        # candidate over 96 horizons on every call cost ~7 ms per forecast)
        info = {"scores": self.scores if name in (None, self.chosen) else self._scored_for(horizon_steps)}
        return Forecast(fc.point, fc.lower80, fc.upper80, fc.lower95, fc.upper95,
                        model=f"auto:{fc.model}", step_s=fc.step_s, start_ts=fc.start_ts,
                        fallback=fc.fallback, info=info)

    def predict_profile(self, horizon_steps: int) -> Forecast:
        """A ``horizon_steps`` forecast whose step ``h`` comes from the candidate chosen for horizon
        ``h`` (:meth:`choice_for`; beyond the calibrated horizons, the choice for the longest): the
        first steps of a day-ahead profile from the model best a few steps ahead, not from the
        one best on average over the day. Used for the peak plan (agent/forecast/online.py)."""
        if not isinstance(horizon_steps, int) or horizon_steps < 1:
            return self.predict(horizon_steps)
        top = min(horizon_steps, max(f.calibrator.max_h for f in self.candidates.values()))
        names = [self.choice_for(h) for h in range(1, top + 1)]
        whole = self.predict(horizon_steps)  # the choice for the whole horizon: the steps beyond ``top``
        arrays = [np.array(a, dtype=float) for a in (whole.point, whole.lower80, whole.upper80, whole.lower95,
                                                     whole.upper95)]
        by_name: dict[str, Forecast] = {}
        for k, name in enumerate(names):
            if name not in by_name:
                by_name[name] = self.candidates[name].predict(horizon_steps)
            fc = by_name[name]
            for a, src in zip(arrays, (fc.point, fc.lower80, fc.upper80, fc.lower95, fc.upper95), strict=True):
                a[k] = float(src[k])
        return Forecast(*arrays, model=f"auto:{'+'.join(dict.fromkeys(names))}", step_s=whole.step_s,
                        start_ts=whole.start_ts, fallback=whole.fallback, info=whole.info)

    def choice_for(self, horizon_steps: int) -> str:
        """The candidate used for a ``horizon_steps``-step forecast (scored on horizons 1..H)."""
        current = self._current  # raises before fit
        h = min(int(horizon_steps), max(f.calibrator.max_h for f in self.candidates.values()))
        if h == self.select_horizon and self.chosen is not None:
            return self.chosen
        if h in self._scored:
            return self._by_h[h]
        finite = self._scores_at(h)
        prev = self._by_h.get(h, self.chosen)
        best = prev if prev is not None else current.name
        if finite:
            best = min(finite, key=lambda k: finite[k])
            if prev in finite and best != prev and not self._beats(best, prev, h, finite):
                best = prev
        if best != self._by_h.get(h):
            logger.info("forecast auto: %d-step horizon uses %s (MAE over 1..%d: %s)", h, best, h,
                        ", ".join(f"{k}={v:.4g}" for k, v in sorted(finite.items(), key=lambda kv: kv[1]))
                        or "no scores yet")
        self._by_h[h] = best if best is not None else current.name
        self._scored[h] = finite
        return self._by_h[h]

    def _beats(self, challenger: str, incumbent: str, horizon: int, scores: dict[str, float]) -> bool:
        """Whether ``challenger`` should replace ``incumbent`` for ``horizon``: better by
        ``switch_margin`` over the selection window **and over each half of it**. A model
        ahead only thanks to its last few days switched in, then did worse than the model it
        replaced (SimBench G1-A, 30 min ahead: 14.93 % MAPE against persistence's 14.89 %)."""
        keep = 1.0 - self.switch_margin
        if scores[challenger] > keep * scores[incumbent]:
            return False
        a, b = self.candidates[challenger].calibrator, self.candidates[incumbent].calibrator
        half = max(1, min(self.select_window, a.window, b.window) // 2)  # the residuals kept
        for skip in (0, half):
            ea = a.mean_abs_error(horizon, last=half, skip=skip)
            eb = b.mean_abs_error(horizon, last=half, skip=skip)
            if math.isfinite(ea) and math.isfinite(eb) and ea > keep * eb:
                return False
        return True

    def _scored_for(self, horizon_steps: int) -> dict[str, float]:
        h = min(int(horizon_steps), max(f.calibrator.max_h for f in self.candidates.values()))
        got = self._scored.get(h)
        return got if got is not None else self._scores_at(h)

    def _scores_at(self, horizon: int) -> dict[str, float]:
        out = {}
        for name, f in self.candidates.items():
            if not f._fitted or (f.fallback_reason is not None and name != "persistence"):
                continue
            mae = f.calibrator.mean_abs_error(horizon, last=self.select_window)
            if math.isfinite(mae):
                out[name] = round(mae, 6)
        return out

    def wait_refit(self, timeout: float | None = None) -> None:
        for f in self.candidates.values():
            f.wait_refit(timeout)

    # ------------------------------------------------------------------ selection
    def _select(self, initial: bool = False) -> None:
        self._scored.clear()  # per-horizon choices are re-scored on the next predict
        scores = {}
        for name, f in self.candidates.items():
            if not f._fitted:
                continue
            mae = f.calibrator.mean_abs_error(self.select_horizon, last=self.select_window)
            if f.fallback_reason is not None and name != "persistence":
                mae = math.nan  # its fallback is a baseline that competes under its own name
            scores[name] = mae
        finite = {k: v for k, v in scores.items() if math.isfinite(v)}
        self.scores = {k: round(v, 6) for k, v in scores.items() if math.isfinite(v)}
        if finite:
            best = min(finite, key=lambda k: finite[k])
            if (self.chosen in finite and best != self.chosen
                    and not self._beats(best, self.chosen, self.select_horizon, finite)):
                best = self.chosen  # hysteresis: no flapping between near-equal models
        else:  # nothing scored yet (very short history): the simplest fitted model
            best = next(iter(k for k in self.candidates if k in scores))
        if best != self.chosen:
            ranked = ", ".join(f"{k}={v:.4g}" for k, v in sorted(finite.items(),
                                                                  key=lambda kv: kv[1]))
            logger.info("forecast auto: %s %s (MAE over %d step(s), last %d origins: %s)",
                        "chose" if initial or self.chosen is None else
                        f"switched from {self.chosen} to", best, self.select_horizon,
                        self.select_window, ranked or "no scores yet")
            self.chosen = best


def _default_candidates(periods: Sequence[int]) -> list[str]:
    names = ["persistence"]
    if len(periods) >= 1:
        names += ["seasonal_naive_daily", "level_shift_daily"]
    if len(periods) >= 2:
        names += ["seasonal_naive_weekly", "level_shift_weekly", "dshw", "lstm"]
    return [n for n in names if n in MODEL_NAMES]
