"""Double-seasonal exponential smoothing (Taylor 2003) with first-order error adjustment.

J.W. Taylor, "Short-term electricity demand forecasting using double seasonal exponential
smoothing", J. Oper. Res. Soc. 54(8), 2003. With ``s1`` the daily and ``s2`` the weekly period
(in steps) and no trend term, the multiplicative form is::

    level   l_t = a * y_t / (d_{t-s1} w_{t-s2}) + (1 - a) * l_{t-1}
    daily   d_t = g * y_t / (l_t w_{t-s2})      + (1 - g) * d_{t-s1}
    weekly  w_t = o * y_t / (l_t d_{t-s1})      + (1 - o) * w_{t-s2}
    error   e_t = y_t - l_{t-1} d_{t-s1} w_{t-s2}
    k-step  y_t(k) = l_t d_{t-s1+k} w_{t-s2+k} + phi**k * e_t

(indices wrap within a season for ``k`` beyond it). The additive form replaces products by sums
and is used when the series touches zero. ``a, g, o, phi`` in [0, 1] minimise the sum of squared
one-step errors (AR term included) with :func:`scipy.optimize.minimize` (L-BFGS-B); the first
week initialises the indices, errors of the first day are not counted.

The recursion is sequential, so it is plain Python over floats; online updates cost one step
of it. scipy is imported only when a model is fitted.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from agent.forecast.engine import Engine

logger = logging.getLogger(__name__)

_STARTS = ((0.05, 0.2, 0.2, 0.9), (0.01, 0.05, 0.05, 0.5), (0.2, 0.4, 0.4, 0.98))


class DoubleSeasonalES(Engine):
    name = "dshw"

    def __init__(self, s1: int, s2: int, *, multiplicative: bool | None = None,
                 refit_every: int | None = None, max_fit: int | None = None) -> None:
        if not (2 <= s1 < s2):
            raise ValueError(f"need 2 <= s1 < s2, got s1={s1}, s2={s2}")
        self.s1, self.s2 = int(s1), int(s2)
        self._mult_opt = multiplicative
        self.refit_every = self.s2 if refit_every is None else refit_every
        self.max_fit = max_fit or 6 * self.s2  # optimise on at most this many recent points
        self.params: tuple[float, float, float, float] = _STARTS[0]
        self.multiplicative = True
        self._warm: tuple[float, float, float, float] | None = None

    def min_history(self) -> int:
        return self.s2 + 2 * self.s1

    def warm_from(self, previous: Engine) -> None:
        if isinstance(previous, DoubleSeasonalES) and hasattr(previous, "_level"):
            self._warm = previous.params

    # -------------------------------------------------------------- initial states
    def _init_states(self, y: np.ndarray) -> tuple[float, list[float], list[float]]:
        s1, s2 = self.s1, self.s2
        first = y[:s2]
        level = float(first.mean())
        if self.multiplicative:
            ratio = first / level
            d = np.array([ratio[j::s1].mean() for j in range(s1)])
            w = ratio / d[np.arange(s2) % s1]
        else:
            dev = first - level
            d = np.array([dev[j::s1].mean() for j in range(s1)])
            w = dev - d[np.arange(s2) % s1]
        return level, d.tolist(), w.tolist()

    # -------------------------------------------------------------- recursion
    def _run(self, params: tuple[float, ...], y: list[float], level: float, d: list[float],
             w: list[float], record: bool = False, burn: int = 0
             ) -> tuple[float, float, float, list[float] | None, list[float] | None]:
        """Run the recursion over ``y`` from the given states (mutates ``d``/``w``).

        Returns (sse, level, last raw error, per-step levels, per-step raw errors).
        """
        a, g, o, ph = params
        s1, s2 = self.s1, self.s2
        mult = self.multiplicative
        e_prev = 0.0
        sse = 0.0
        levels: list[float] | None = [] if record else None
        errors: list[float] | None = [] if record else None
        dh: list[float] | None = list(d) if record else None
        wh: list[float] | None = list(w) if record else None
        for t, yt in enumerate(y):
            i1 = t % s1
            i2 = t % s2
            dd = d[i1]
            ww = w[i2]
            if mult:
                e = yt - level * dd * ww
                new_level = a * yt / (dd * ww) + (1 - a) * level
                d[i1] = g * yt / (new_level * ww) + (1 - g) * dd
                w[i2] = o * yt / (new_level * dd) + (1 - o) * ww
            else:
                e = yt - (level + dd + ww)
                new_level = a * (yt - dd - ww) + (1 - a) * level
                d[i1] = g * (yt - new_level - ww) + (1 - g) * dd
                w[i2] = o * (yt - new_level - dd) + (1 - o) * ww
            if t >= burn:
                err = e - ph * e_prev
                sse += err * err
            level = new_level
            e_prev = e
            if record:
                levels.append(level)  # type: ignore[union-attr]
                errors.append(e)  # type: ignore[union-attr]
                dh.append(d[i1])  # type: ignore[union-attr]
                wh.append(w[i2])  # type: ignore[union-attr]
        self._dh, self._wh = dh, wh
        return sse, level, e_prev, levels, errors

    # -------------------------------------------------------------- Engine API
    def fit(self, y: np.ndarray, ts0: float) -> None:
        from scipy.optimize import minimize

        y = np.asarray(y, dtype=float)
        if len(y) < self.min_history():
            raise ValueError(f"dshw needs {self.min_history()} points, got {len(y)}")
        self.multiplicative = bool(np.min(y) > 0) if self._mult_opt is None else self._mult_opt
        yfit = y[-self.max_fit:] if len(y) > self.max_fit + self.s2 else y
        level0, d0, w0 = self._init_states(yfit)
        ylist = yfit.tolist()
        scale = float(np.mean(yfit ** 2)) * len(yfit)

        def objective(p: np.ndarray) -> float:
            sse = self._run(tuple(p), ylist, level0, list(d0), list(w0), burn=self.s1)[0]
            return sse / scale if np.isfinite(sse) else 1e9

        starts = [self._warm] if self._warm is not None else list(_STARTS)
        best = None
        for x0 in starts:
            res = minimize(objective, np.array(x0), method="L-BFGS-B",
                           bounds=[(0.0, 1.0)] * 4, options={"maxiter": 60})
            if best is None or res.fun < best.fun:
                best = res
        assert best is not None
        self.params = tuple(float(v) for v in best.x)  # type: ignore[assignment]
        logger.debug("dshw fitted: alpha=%.3f delta=%.3f omega=%.3f phi=%.3f (%s)",
                     *self.params, "multiplicative" if self.multiplicative else "additive")
        # final pass over the whole history, recording states for backtests
        level0, d0, w0 = self._init_states(y)
        self._d = list(d0)
        self._w = list(w0)
        _, self._level, self._e, levels, errors = self._run(
            self.params, y.tolist(), level0, self._d, self._w, record=True)
        self._levels = np.array(levels)
        self._errors = np.array(errors)
        self._t = len(y)

    def update(self, y: np.ndarray, n_new: int) -> None:
        a, g, o, ph = self.params
        for yt in y[len(y) - n_new:].tolist():
            i1 = self._t % self.s1
            i2 = self._t % self.s2
            dd, ww, level = self._d[i1], self._w[i2], self._level
            if self.multiplicative:
                self._e = yt - level * dd * ww
                new_level = a * yt / (dd * ww) + (1 - a) * level
                self._d[i1] = g * yt / (new_level * ww) + (1 - g) * dd
                self._w[i2] = o * yt / (new_level * dd) + (1 - o) * ww
            else:
                self._e = yt - (level + dd + ww)
                new_level = a * (yt - dd - ww) + (1 - a) * level
                self._d[i1] = g * (yt - new_level - ww) + (1 - g) * dd
                self._w[i2] = o * (yt - new_level - dd) + (1 - o) * ww
            self._level = new_level
            self._t += 1

    def point(self, y: np.ndarray, horizon: int) -> np.ndarray:
        k = np.arange(1, horizon + 1)
        t = self._t - 1  # index of the last observation
        di = (t - self.s1 + (k - 1) % self.s1 + 1) % self.s1
        wi = (t - self.s2 + (k - 1) % self.s2 + 1) % self.s2
        d = np.asarray(self._d)[di]
        w = np.asarray(self._w)[wi]
        ar = self.params[3] ** k * self._e
        if self.multiplicative:
            return self._level * d * w + ar
        return self._level + d + w + ar

    def backtest(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        k = np.arange(1, horizon + 1)[None, :]
        o = origins[:, None]
        # _dh[s1 + tau] is the daily index set at time tau (tau >= -s1), likewise _wh
        dh = np.asarray(self._dh)
        wh = np.asarray(self._wh)
        d = dh[self.s1 + o - self.s1 + (k - 1) % self.s1 + 1]
        w = wh[self.s2 + o - self.s2 + (k - 1) % self.s2 + 1]
        level = self._levels[origins][:, None]
        ar = self.params[3] ** k * self._errors[origins][:, None]
        if self.multiplicative:
            return level * d * w + ar
        return level + d + w + ar

    def describe(self) -> dict[str, Any]:
        a, g, o, ph = self.params
        return {"alpha": a, "delta": g, "omega": o, "phi": ph,
                "form": "multiplicative" if self.multiplicative else "additive",
                "s1": self.s1, "s2": self.s2}
