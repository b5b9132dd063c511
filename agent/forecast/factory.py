"""Build a forecaster by name: one of the registry's models, or ``auto``.

Its own module so that :mod:`agent.forecast.auto` (which needs the registry) and the registry
(which does not need ``auto``) never import each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.forecast.auto import AutoForecaster
from agent.forecast.base import Forecaster
from agent.forecast.registry import engine_factory


def make_forecaster(name: str = "auto", *, step_s: float,
                    seasonal_periods: Sequence[int] | None = None,
                    engine_kw: dict[str, Any] | None = None, **kw: Any) -> Forecaster:
    """Build a forecaster by name (``"auto"`` selects on recent history and logs its choice).

    ``kw`` go to :class:`~agent.forecast.base.Forecaster` (``clock``, ``nonnegative``,
    ``calib_horizon``, ``background``, ...) or, for ``auto``, to
    :class:`~agent.forecast.auto.AutoForecaster` (``candidates``, ``select_horizon``, ...).
    """
    if name == "auto":
        return AutoForecaster(step_s=step_s, seasonal_periods=seasonal_periods, **kw)
    factory = engine_factory(name, step_s, seasonal_periods, **(engine_kw or {}))
    return Forecaster(factory, step_s, seasonal_periods, name=name, **kw)
