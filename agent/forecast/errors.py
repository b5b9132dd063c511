"""Errors raised by :mod:`agent.forecast`.

Every error the package raises derives from one root, so a caller's loop can catch it in one
place; each leaf also inherits the stdlib class it resembles::

    ForecastError
     ├── ForecastInputError (ValueError)      a series the forecaster cannot repair
     │    └── InsufficientHistoryError         no usable point at all
     ├── UnknownModelError (ValueError)        ``make_forecaster`` was given an unknown name
     └── ModelFileError (OSError)              an exported model file is missing or corrupt

Bad input that *can* be repaired (gaps, NaN, negative demand, a constant series, too little
history for a seasonal model, a clock jump) never raises: it yields a documented fallback
forecast and a log line (see :mod:`agent.forecast.base`).
"""

from __future__ import annotations

from gridswarm.errors import GridSwarmError


class ForecastError(GridSwarmError):
    """Root of every error raised by the forecasting package."""


class ForecastInputError(ForecastError, ValueError):
    """The series handed to a forecaster cannot be used (wrong shape, no finite value, ...)."""


class InsufficientHistoryError(ForecastInputError):
    """Not a single usable observation: there is nothing to forecast from."""


class UnknownModelError(ForecastError, ValueError):
    """``make_forecaster`` was asked for a model name it does not know."""


class ModelFileError(ForecastError, OSError):
    """An exported model file is missing, unreadable or does not match the runtime."""
