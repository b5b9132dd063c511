"""The value every forecaster returns.

Units follow docs/architecture.md §6: the forecast is in the unit of the series it was fitted on (W for power
series), times are UTC epoch seconds, ``step_s`` is the step length in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Forecast:
    """A point forecast with 80 % and 95 % prediction intervals for ``len(point)`` steps.

    ``point[i]`` is the forecast for the step starting at ``start_ts + i * step_s``; the first
    step is the one right after the last observation the forecaster has seen (or right after
    "now" when the forecaster has a clock and the data stopped arriving).

    ``model`` names the model that produced the numbers (``"auto:dshw"`` when automatic selection
    chose double-seasonal ES). ``fallback`` is ``None`` for a normal forecast, otherwise the
    reason a simpler model stood in (too little history, constant series, ...).
    """

    point: np.ndarray
    lower80: np.ndarray
    upper80: np.ndarray
    lower95: np.ndarray
    upper95: np.ndarray
    model: str
    step_s: float
    start_ts: float
    fallback: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        """Number of forecast steps."""
        return int(len(self.point))

    def timestamps(self) -> np.ndarray:
        """Start time (epoch s) of every forecast step."""
        return self.start_ts + self.step_s * np.arange(self.horizon, dtype=float)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation (lists of floats)."""

        def lst(a: np.ndarray) -> list[float]:
            return [float(x) for x in a]

        return {
            "model": self.model,
            "fallback": self.fallback,
            "step_s": float(self.step_s),
            "start_ts": float(self.start_ts),
            "horizon": self.horizon,
            "timestamps": lst(self.timestamps()),
            "point": lst(self.point),
            "lower80": lst(self.lower80),
            "upper80": lst(self.upper80),
            "lower95": lst(self.lower95),
            "upper95": lst(self.upper95),
            **({"info": self.info} if self.info else {}),
        }
