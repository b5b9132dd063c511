"""Model names and the engine factory behind :func:`agent.forecast.factory.make_forecaster`.

=========================  ================================================================
name                       model
=========================  ================================================================
``persistence``            ``y(t+h) = y(t)``
``seasonal_naive_daily``   ``y(t+h-P_day)``
``seasonal_naive_weekly``  ``y(t+h-P_week)``
``level_shift_weekly``     ``y(t) + y(t+h-P_week) - y(t-P_week)`` (``level_shift_daily`` too)
``dshw``                   double-seasonal exponential smoothing, Taylor 2003 (needs both)
``lstm``                   small LSTM on week-over-week differences, NumPy inference
``auto``                   picks the best of the above on the site's recent history
=========================  ================================================================

Periods come from ``seasonal_periods`` (default: daily and weekly in steps when ``step_s``
divides a day). A name whose period is missing raises :class:`UnknownModelError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.forecast.engine import Engine, EngineFactory, default_periods
from agent.forecast.errors import ForecastInputError, UnknownModelError

MODEL_NAMES: tuple[str, ...] = (
    "persistence",
    "seasonal_naive_daily",
    "seasonal_naive_weekly",
    "level_shift_daily",
    "level_shift_weekly",
    "dshw",
    "lstm",
)


def _periods(step_s: float, seasonal_periods: Sequence[int] | None) -> tuple[int, int | None]:
    periods = sorted(default_periods(step_s) if seasonal_periods is None else seasonal_periods)
    if not periods:
        raise ForecastInputError(
            f"no seasonal period: step {step_s} s does not divide a day; pass seasonal_periods")
    daily = int(periods[0])
    weekly = int(periods[-1]) if len(periods) > 1 else None
    return daily, weekly


def engine_factory(name: str, step_s: float, seasonal_periods: Sequence[int] | None = None,
                   **engine_kw: Any) -> EngineFactory:
    """A zero-argument callable building a fresh engine for model ``name``."""
    from agent.forecast import baselines

    if name == "persistence":
        return baselines.Persistence
    daily, weekly = _periods(step_s, seasonal_periods)
    longest = weekly or daily

    def need_weekly() -> int:
        if weekly is None:
            raise UnknownModelError(f"{name} needs a weekly period; only {daily} given")
        return weekly

    if name == "seasonal_naive_daily":
        return lambda: baselines.SeasonalNaive(daily, "seasonal_naive_daily")
    if name == "seasonal_naive_weekly":
        w = need_weekly()
        return lambda: baselines.SeasonalNaive(w, "seasonal_naive_weekly")
    if name == "level_shift_daily":
        return lambda: baselines.SeasonalLevelShift(daily, "level_shift_daily")
    if name == "level_shift_weekly":
        w = need_weekly()
        return lambda: baselines.SeasonalLevelShift(w, "level_shift_weekly")
    if name == "dshw":
        from agent.forecast.dshw import DoubleSeasonalES

        w = need_weekly()
        return lambda: DoubleSeasonalES(daily, w, **engine_kw)
    if name == "lstm":
        from agent.forecast.lstm import LSTMEngine

        return lambda: LSTMEngine(period=longest, step_s=step_s, **engine_kw)
    raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}, auto")


__all__ = ["MODEL_NAMES", "Engine", "engine_factory"]
