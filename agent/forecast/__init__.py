"""Short-term demand and generation forecasting for the agent (issue 5).

Public surface::

    from agent.forecast import Forecaster, Forecast, make_forecaster
    f = make_forecaster("auto", step_s=900)          # or a name from MODEL_NAMES
    f.fit(values, start_ts)                          # oldest first, epoch s of values[0]
    f.update(new_values)                             # cheap, online; optional ts= of the first
    fc = f.predict(96)                               # Forecast: point, lower80/upper80,
                                                     # lower95/upper95, model, step_s, start_ts

    from agent.forecast import PVForecaster           # pvlib-based PV output, same Forecast

Heavy dependencies load lazily: numpy only to import this package; scipy when a
double-seasonal model is fitted; pvlib/pandas only for :class:`PVForecaster`; never torch.
Errors derive from :class:`ForecastError` (see :mod:`agent.forecast.errors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.forecast.base import Engine, Forecaster
from agent.forecast.errors import (
    ForecastError,
    ForecastInputError,
    InsufficientHistoryError,
    ModelFileError,
    UnknownModelError,
)
from agent.forecast.factory import make_forecaster
from agent.forecast.registry import MODEL_NAMES
from agent.forecast.result import Forecast

if TYPE_CHECKING:
    from agent.forecast.auto import AutoForecaster
    from agent.forecast.pv import PVForecaster


def __getattr__(name: str) -> Any:  # lazy: pvlib and pandas load only when PV is used
    if name == "PVForecaster":
        from agent.forecast.pv import PVForecaster

        return PVForecaster
    if name == "AutoForecaster":
        from agent.forecast.auto import AutoForecaster

        return AutoForecaster
    raise AttributeError(name)


__all__ = [
    "MODEL_NAMES",
    "AutoForecaster",
    "Engine",
    "Forecast",
    "ForecastError",
    "ForecastInputError",
    "Forecaster",
    "InsufficientHistoryError",
    "ModelFileError",
    "PVForecaster",
    "UnknownModelError",
    "make_forecaster",
]
