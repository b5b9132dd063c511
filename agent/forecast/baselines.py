"""Baselines any serious comparison needs.

- :class:`Persistence`: ``y(t+h) = y(t)``.
- :class:`SeasonalNaive`: ``y(t+h) = y(t+h-P)`` (daily or weekly ``P``; wraps for ``h > P``).
- :class:`SeasonalLevelShift`: ``y(t+h) = y(t) + y(t+h-P) - y(t-P)`` — the seasonal profile
  shifted to today's level (docs/forecasting.md, "Models").

All three are stateless over the history, so ``backtest`` is a vectorised lookup.
"""

from __future__ import annotations

import numpy as np

from agent.forecast.engine import Engine


def _season_index(origins: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """Index of ``y(t+h-P)`` for each origin ``t`` (rows) and ``h`` = 1..horizon (columns)."""
    h = np.arange(1, horizon + 1)
    return origins[:, None] + ((h - 1) % period + 1)[None, :] - period


class Persistence(Engine):
    name = "persistence"

    def min_history(self) -> int:
        return 1

    def fit(self, y: np.ndarray, ts0: float) -> None:
        pass

    def point(self, y: np.ndarray, horizon: int) -> np.ndarray:
        return np.full(horizon, float(y[-1]))

    def backtest(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        return np.repeat(y[origins][:, None], horizon, axis=1)


class SeasonalNaive(Engine):
    def __init__(self, period: int, label: str | None = None) -> None:
        self.period = int(period)
        self.name = label or f"seasonal_naive_{self.period}"

    def min_history(self) -> int:
        return self.period

    def fit(self, y: np.ndarray, ts0: float) -> None:
        pass

    def point(self, y: np.ndarray, horizon: int) -> np.ndarray:
        origin = np.array([len(y) - 1])
        return y[_season_index(origin, horizon, self.period)[0]].astype(float)

    def backtest(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        return y[_season_index(origins, horizon, self.period)].astype(float)

    def describe(self) -> dict[str, int]:
        return {"period": self.period}


class SeasonalLevelShift(SeasonalNaive):
    def __init__(self, period: int, label: str | None = None) -> None:
        super().__init__(period, label or f"level_shift_{int(period)}")

    def min_history(self) -> int:
        return self.period + 1

    def point(self, y: np.ndarray, horizon: int) -> np.ndarray:
        shift = float(y[-1] - y[-1 - self.period])
        return super().point(y, horizon) + shift

    def backtest(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        shift = y[origins] - y[origins - self.period]
        return y[_season_index(origins, horizon, self.period)] + shift[:, None]
