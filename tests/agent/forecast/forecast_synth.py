"""Synthetic series for the forecast unit tests (real data: tests/bench/test_forecast_real_data.py)."""

from __future__ import annotations

import numpy as np

STEP = 1800.0
DAY = 48
WEEK = 336
T0 = 959990400.0  # a Monday, 00:00 UTC


def double_seasonal(n: int, seed: int = 0, noise: float = 0.01) -> np.ndarray:
    """Demand-like series: daily and weekly cycles, slow level drift, AR(1) noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    daily = 1 + 0.25 * np.sin(2 * np.pi * t / DAY - 1.5)
    weekly = np.where((t // DAY) % 7 >= 5, 0.85, 1.0)
    level = 1000 * (1 + 0.05 * np.sin(2 * np.pi * t / (6 * WEEK)))
    e = np.zeros(n)
    shocks = rng.normal(0, noise, n)
    for i in range(1, n):
        e[i] = 0.8 * e[i - 1] + shocks[i]
    return level * daily * weekly * (1 + e)
