"""Split-conformal prediction intervals calibrated per horizon on recent residuals.

For each horizon ``h`` (1..``max_h``) the calibrator keeps the last ``window`` signed residuals
``actual - point`` of forecasts made ``h`` steps earlier. The interval at level ``1 - a`` is
``point + [q_lo, q_hi]`` where ``q_lo``/``q_hi`` are the ``a/2`` and ``1 - a/2`` empirical
quantiles with the usual finite-sample correction (``ceil((n + 1)(1 - a/2)) / n``), so the
intervals follow the recent error distribution, skew included, without assuming normality.

Residuals come from two sources: a rolling-origin backtest over the end of the history when a
forecaster is fitted, and then every forecast checked against the actual values as they arrive
(:meth:`record_actual`), so coverage tracks the site's recent behaviour. The coverage this gives
is measured by :mod:`bench.forecast`, not assumed.

Horizons with fewer than ``min_count`` residuals borrow the quantiles of the nearest calibrated
shorter horizon, widened by ``sqrt(h / h_ref)`` (a random-walk growth assumption); with no
residuals at all a crude interval from the spread of first differences is used.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

LEVELS: tuple[float, ...] = (0.80, 0.95)


class ConformalCalibrator:
    """Per-horizon residual windows (numpy rings) and the interval quantiles they imply.

    Quantiles are recomputed lazily, at most once every ``refresh`` scored observations, so the
    per-step cost stays small on a gateway (the intervals drift slowly anyway).
    """

    def __init__(self, max_h: int, window: int = 1000, min_count: int = 20,
                 refresh: int = 12) -> None:
        if max_h < 1:
            raise ValueError(f"max_h must be >= 1, got {max_h}")
        self.max_h = int(max_h)
        self.window = int(window)
        self.min_count = int(min_count)
        self.refresh = int(refresh)
        self._buf = np.zeros((self.max_h, self.window))
        self._count = np.zeros(self.max_h, dtype=int)
        self._pos = np.zeros(self.max_h, dtype=int)
        # pending forecasts: (origin = index of the last observation used, points)
        self._pending: deque[tuple[int, np.ndarray]] = deque()
        self._cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        self._since = 0
        self.fallback_sigma: float = 0.0

    # ---------------------------------------------------------------- residual intake
    def clear(self) -> None:
        self._count[:] = 0
        self._pos[:] = 0
        self._pending.clear()
        self._cache = {}

    def _push(self, h0: int, r: float) -> None:
        p = self._pos[h0]
        self._buf[h0, p] = r
        self._pos[h0] = (p + 1) % self.window
        if self._count[h0] < self.window:
            self._count[h0] += 1

    def add_backtest(self, forecasts: np.ndarray, actuals: np.ndarray) -> None:
        """Add residuals of a backtest: ``forecasts[i, h-1]`` vs ``actuals[i, h-1]`` (NaN = none)."""
        f = np.asarray(forecasts, dtype=float)
        a = np.asarray(actuals, dtype=float)
        for h0 in range(min(self.max_h, f.shape[1])):
            r = a[:, h0] - f[:, h0]
            for x in r[np.isfinite(r)][-self.window :]:
                self._push(h0, float(x))
        self._cache = {}

    def add_forecast(self, origin: int, point: np.ndarray) -> None:
        """Remember a forecast made after observation ``origin`` to score it later."""
        self._pending.append((origin, np.asarray(point[: self.max_h], dtype=float)))
        while len(self._pending) > self.max_h + 1:
            self._pending.popleft()

    def record_actual(self, index: int, value: float) -> None:
        """Score every pending forecast against the actual observation ``index``."""
        if math.isfinite(value):
            for origin, pts in self._pending:
                h = index - origin
                if 1 <= h <= len(pts):
                    self._push(h - 1, value - float(pts[h - 1]))
        while self._pending and index - self._pending[0][0] >= len(self._pending[0][1]):
            self._pending.popleft()
        self._since += 1
        if self._since >= self.refresh:
            self._cache = {}

    def counts(self) -> np.ndarray:
        return self._count.copy()

    def residuals(self, h: int) -> np.ndarray:
        """Signed residuals currently held for horizon ``h`` (1-based), in no particular order."""
        return self._buf[h - 1, : self._count[h - 1]].copy()

    def mean_abs_error(self, horizons: int, last: int | None = None, skip: int = 0) -> float:
        """Mean absolute residual over horizons 1..``horizons`` (NaN when there are none).

        ``last`` limits each horizon to its most recent residuals, after leaving out the
        ``skip`` newest (``skip=n, last=n`` scores the ``n`` residuals before the newest ``n``).
        """
        vals = []
        skip = max(0, int(skip))
        for h0 in range(min(horizons, self.max_h)):
            n = int(self._count[h0]) - skip
            if n <= 0:
                continue
            k = n if last is None else min(int(last), n)
            idx = (self._pos[h0] - 1 - skip - np.arange(k)) % self.window
            vals.append(float(np.mean(np.abs(self._buf[h0, idx]))))
        return float(np.mean(vals)) if vals else float("nan")

    # ---------------------------------------------------------------- quantiles
    def _quantiles(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        cached = self._cache.get(level)
        if cached is not None:
            return cached
        self._since = 0
        alpha = 1.0 - level
        lo = np.full(self.max_h, np.nan)
        hi = np.full(self.max_h, np.nan)
        for h0 in range(self.max_h):
            n = int(self._count[h0])
            if n < self.min_count:
                continue
            r = np.sort(self._buf[h0, :n])
            # k-th order statistics with the split-conformal finite-sample correction
            k_hi = min(n, math.ceil((n + 1) * (1 - alpha / 2)))
            k_lo = max(1, math.floor((n + 1) * (alpha / 2)))
            lo[h0] = r[k_lo - 1]
            hi[h0] = r[k_hi - 1]
        self._cache[level] = (lo, hi)
        return lo, hi

    def offsets(self, horizon: int, level: float, skip: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Lower/upper offsets to add to a point forecast of horizons ``skip+1 .. skip+horizon``."""
        lo_c, hi_c = self._quantiles(level)
        ok = np.flatnonzero(np.isfinite(lo_c))
        z = {0.80: 1.2816, 0.95: 1.9600}.get(level, 1.96)
        hs = np.arange(skip + 1, skip + horizon + 1)
        lo = np.empty(horizon)
        hi = np.empty(horizon)
        direct = (hs <= self.max_h) & np.isfinite(lo_c[np.minimum(hs, self.max_h) - 1])
        lo[direct] = lo_c[hs[direct] - 1]
        hi[direct] = hi_c[hs[direct] - 1]
        for i in np.flatnonzero(~direct):
            h = int(hs[i])
            below = ok[ok < h]
            ref = int(below[-1]) if len(below) else (int(ok[0]) if len(ok) else -1)
            if ref >= 0:
                grow = math.sqrt(h / (ref + 1))
                lo[i], hi[i] = lo_c[ref] * grow, hi_c[ref] * grow
            else:
                w = z * self.fallback_sigma * math.sqrt(h)
                lo[i], hi[i] = -w, w
        return np.minimum(lo, 0.0), np.maximum(hi, 0.0)
