"""The engine contract: the numerics of one forecasting model, and the default seasonal periods.

Kept apart from :mod:`agent.forecast.base` (the :class:`~agent.forecast.base.Forecaster` shell
around an engine) so that the baselines, which are engines, and the shell, which falls back on
them, import this module and not each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np


def default_periods(step_s: float) -> tuple[int, ...]:
    """Daily and weekly periods in steps when ``step_s`` divides a day, else none."""
    day = 86400.0 / step_s
    if day >= 2 and abs(day - round(day)) < 1e-9:
        return (int(round(day)), int(round(7 * day)))
    return ()


class Engine(ABC):
    """Numerics of one model on a clean (finite, repaired) series."""

    name: str = "engine"
    #: steps between refits on the latest history (None: never refit after ``fit``)
    refit_every: int | None = None

    @abstractmethod
    def min_history(self) -> int:
        """Fewest observations ``fit`` needs."""

    @abstractmethod
    def fit(self, y: np.ndarray, ts0: float) -> None:
        """Fit on ``y`` (clean); ``ts0`` is the time stamp of ``y[0]``."""

    def update(self, y: np.ndarray, n_new: int) -> None:  # noqa: B027 - optional hook
        """``n_new`` values were appended; ``y`` is the whole clean history including them."""

    @abstractmethod
    def point(self, y: np.ndarray, horizon: int) -> np.ndarray:
        """Point forecast for the ``horizon`` steps after ``y[-1]``."""

    def backtest(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray | None:
        """Forecasts made after ``y[o]`` for every origin ``o`` (one row each), or None.

        Origins are never below ``min_history() - 1``; the engine was fitted on ``y``.
        """
        return None

    def describe(self) -> dict[str, Any]:
        """Fitted parameters worth logging or reporting."""
        return {}

    def warm_from(self, previous: Engine) -> None:  # noqa: B027 - optional hook
        """Start the next fit from ``previous``'s parameters (refits)."""


EngineFactory = Callable[[], Engine]
