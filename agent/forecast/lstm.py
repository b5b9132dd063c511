"""LSTM forecaster: trained offline with PyTorch, run on the gateway with NumPy only.

The model reads, at every step ``t``, four features of the site's series scaled by its mean
level ``s``:

- ``(y_t - y_{t-P}) / s``   the week-over-week (or longest-season) difference,
- ``(y_t - y_{t-1}) / s``   the last step change,
- ``sin``/``cos`` of the time of day,

and forecasts the future seasonal differences ``d_{t+h} = (y_{t+h} - y_{t+h-P}) / s`` for
``h = 1..H``; the forecast is ``y_{t+h-P} + s * d_{t+h}``. (Predicting a constant ``d`` is the
"seasonal naive + level shift" baseline, so the network learns how the level shift evolves.)

Running on a gateway:

- the LSTM runs *stateful*, one cell step per new observation (``update``), so ``predict``
  is a single matrix-vector product for the head: no window re-run, no torch;
- the encoder weights come from a small ``.npz`` file exported by ``scripts/train_lstm.py``
  (``agent/forecast/models/``: ``lstm_taylor_1800s.npz`` trained on Taylor weeks 1-8,
  ``lstm_simbench_900s.npz`` on the first 59 days of a SimBench LV feeder; the file matching
  the site's step is used, else the Taylor one); the linear head is refitted on the site's own history by ridge
  regression on the LSTM's hidden states, at fit time and then every ``refit_every`` steps
  (default: daily) — that is the "learning continuously from the site's history", in closed
  form, without PyTorch and without stalling the loop (it runs in the refit worker).

The first fit holds out the last ``holdout`` steps from the head so the calibration backtest
over them (and automatic model selection) sees out-of-sample errors.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from agent.forecast.engine import Engine
from agent.forecast.errors import ModelFileError

logger = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS_DIR / "lstm_taylor_1800s.npz"
N_FEATURES = 4


def make_features(y: np.ndarray, t: np.ndarray, *, period: int, scale: float, ts0: float,
                  step_s: float) -> np.ndarray:
    """Feature rows (len(t), 4) for steps ``t`` (all ``>= period``) of ``y``; shared with training.

    ``ts0`` is the time stamp of ``y[0]``.
    """
    day = 2 * math.pi * ((ts0 + t * step_s) % 86400.0) / 86400.0
    return np.stack([(y[t] - y[t - period]) / scale, (y[t] - y[t - 1]) / scale,
                     np.sin(day), np.cos(day)], axis=-1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


class LSTMWeights:
    """Encoder (and trained head) weights loaded from an exported ``.npz`` file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            with np.load(self.path, allow_pickle=False) as z:
                self.w_ih = z["w_ih"].astype(np.float64)
                self.w_hh = z["w_hh"].astype(np.float64)
                self.b = z["b"].astype(np.float64)
                self.head_w = z["head_w"].astype(np.float64)
                self.head_b = z["head_b"].astype(np.float64)
                self.meta: dict[str, Any] = json.loads(str(z["meta"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelFileError(f"cannot load LSTM model {self.path}: {exc}") from exc
        hd = self.w_hh.shape[1]
        if (self.w_ih.shape != (4 * hd, N_FEATURES) or self.w_hh.shape != (4 * hd, hd)
                or self.b.shape != (4 * hd,) or self.head_w.shape[1] != hd):
            raise ModelFileError(f"LSTM model {self.path} has inconsistent shapes")
        self.hidden = hd
        # one fused matrix for [x, h] -> gates
        self.w = np.concatenate([self.w_ih, self.w_hh], axis=1).T.copy()  # (F+H, 4H)


_CACHE: dict[Path, LSTMWeights] = {}


def model_for_step(step_s: float) -> Path:
    """The exported model trained at this step length if one ships, else the Taylor model."""
    matches = sorted(MODELS_DIR.glob(f"lstm_*_{int(round(step_s))}s.npz"))
    return matches[0] if matches else DEFAULT_MODEL


def load_weights(path: Path | str | None = None) -> LSTMWeights:
    p = Path(path) if path is not None else DEFAULT_MODEL
    if p not in _CACHE:
        _CACHE[p] = LSTMWeights(p)
    return _CACHE[p]


class LSTMEngine(Engine):
    name = "lstm"

    def __init__(self, period: int, step_s: float, *, model_path: Path | str | None = None,
                 head_horizon: int = 96, ridge: float = 10.0, refit_every: int | None = None,
                 holdout: int = 1000) -> None:
        self.period = int(period)
        self.step_s = float(step_s)
        self.weights = load_weights(model_path if model_path is not None
                                    else model_for_step(step_s))
        self.head_horizon = int(head_horizon)
        self.ridge = float(ridge)
        self.refit_every = refit_every if refit_every is not None else max(
            1, int(round(86400 / step_s)))
        self.holdout = int(holdout)
        self._refit = False

    def min_history(self) -> int:
        # one season for the first difference, then two days of training targets for the head
        return self.period + 2 * max(1, int(round(86400 / self.step_s))) + self.head_horizon

    def warm_from(self, previous: Engine) -> None:
        self._refit = isinstance(previous, LSTMEngine) and hasattr(previous, "_h")

    # -------------------------------------------------------------- features and cell
    def _features(self, y: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Feature rows for absolute steps ``t`` (all ``>= period``) of history ``y``."""
        # y[0] is at ts0 + (steps seen so far - len(y)) * step: the caller may trim history
        y0_ts = self.ts0 + (self._t - len(y)) * self.step_s
        return make_features(y, t, period=self.period, scale=self.scale, ts0=y0_ts,
                             step_s=self.step_s)

    def _step(self, x: np.ndarray, h: np.ndarray, c: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        hd = self.weights.hidden
        g = np.concatenate([x, h]) @ self.weights.w + self.weights.b
        i = _sigmoid(g[:hd])
        f = _sigmoid(g[hd:2 * hd])
        gg = np.tanh(g[2 * hd:3 * hd])
        o = _sigmoid(g[3 * hd:])
        c = f * c + i * gg
        return o * np.tanh(c), c

    def _run(self, y: np.ndarray, start: int) -> np.ndarray:
        """Hidden states after each step ``start..len(y)-1`` (rows), from a zero state."""
        hd = self.weights.hidden
        h = np.zeros(hd)
        c = np.zeros(hd)
        xs = self._features(y, np.arange(start, len(y)))
        out = np.empty((len(xs), hd))
        for k, x in enumerate(xs):
            h, c = self._step(x, h, c)
            out[k] = h
        self._h, self._c = h, c
        self._x = xs[-1] if len(xs) else np.zeros(N_FEATURES)
        return out

    # -------------------------------------------------------------- Engine API
    def fit(self, y: np.ndarray, ts0: float) -> None:
        y = np.asarray(y, dtype=float)
        P = self.period
        self.ts0 = float(ts0)
        level = float(np.mean(np.abs(y)))
        self.scale = level if level > 0 else 1.0
        self._t = len(y)  # steps seen; ts0 is the time of step 0
        self._start = P
        hs = self._run(y, P)  # hs[k] is the state after step P + k
        self._hs = hs
        H = self.head_horizon
        n_train = len(y) - (0 if self._refit else min(self.holdout, len(y) // 3))
        origins = np.arange(P, n_train - H)  # need every target y[o+h], h <= H, inside
        if len(origins) < 2 * H:
            origins = np.arange(P, len(y) - 1)
        X = np.hstack([hs[origins - P], self._features(y, origins)[:, :2]])
        hh = np.arange(1, H + 1)
        idx = np.minimum(origins[:, None] + hh[None, :], len(y) - 1)
        Y = (y[idx] - y[idx - P]) / self.scale
        valid = (origins[:, None] + hh[None, :]) < n_train
        self._fit_head(X, Y, valid)

    def _prior(self, H: int) -> np.ndarray:
        """The exported (trained) head as a (hidden + 1, H) prior, last column repeated."""
        w0 = np.vstack([self.weights.head_w.T, self.weights.head_b[None, :]])
        if w0.shape[1] < H:
            w0 = np.hstack([w0, np.repeat(w0[:, -1:], H - w0.shape[1], axis=1)])
        return w0[:, :H]

    def _fit_head(self, X: np.ndarray, Y: np.ndarray, valid: np.ndarray) -> None:
        """Ridge regression of the targets on [hidden state, 1], shrunk towards the trained head.

        Minimises ``|A W - Y|^2 + ridge |W - W0|^2`` per horizon where targets exist.
        """
        n, k = X.shape
        hd = self.weights.hidden
        Xb = np.hstack([X, np.ones((n, 1))])
        # hidden-state weights shrink towards the trained head; the skip inputs (last seasonal
        # difference, last step change) are nearly free, so the head can at least reproduce
        # the level-shift baseline
        reg = np.diag(np.r_[np.full(hd, self.ridge), np.full(k - hd, 1e-3), 0.0])
        H = Y.shape[1]
        W0 = self._prior(H)
        W0 = np.vstack([W0[:hd], np.zeros((k - hd, H)), W0[hd:]])
        W = W0.copy()
        full = valid.all(axis=1)
        if full.sum() > k + 1:  # common case: one solve for all horizons
            A = Xb[full]
            W[:] = np.linalg.solve(A.T @ A + reg, A.T @ Y[full] + reg @ W0)
        else:
            for j in range(H):
                A = Xb[valid[:, j]]
                if len(A) > k + 1:
                    W[:, j] = np.linalg.solve(A.T @ A + reg,
                                              A.T @ Y[valid[:, j], j] + reg @ W0[:, j])
        self.head_w = W[:-1].T.copy()  # (H, hidden + 2)
        self.head_b = W[-1].copy()

    def update(self, y: np.ndarray, n_new: int) -> None:
        n = len(y)
        self._t += n_new  # y now ends at step self._t - 1
        for t in range(n - n_new, n):
            x = self._features(y, np.array([t]))[0]
            self._h, self._c = self._step(x, self._h, self._c)
            self._x = x

    def _assemble(self, y: np.ndarray, origins: np.ndarray, d: np.ndarray, horizon: int
                  ) -> np.ndarray:
        H = d.shape[1]
        if horizon > H:  # hold the last predicted difference beyond the head's horizon
            d = np.concatenate([d, np.repeat(d[:, -1:], horizon - H, axis=1)], axis=1)
        d = d[:, :horizon]
        hh = np.arange(1, horizon + 1)
        season = origins[:, None] + ((hh - 1) % self.period + 1)[None, :] - self.period
        return y[season] + self.scale * d

    def point(self, y: np.ndarray, horizon: int) -> np.ndarray:
        z = np.concatenate([self._h, self._x[:2]])
        d = (self.head_w @ z + self.head_b)[None, :]
        return self._assemble(y, np.array([len(y) - 1]), d, horizon)[0]

    def backtest(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        origins = np.asarray(origins)
        o = np.maximum(origins, self._start)
        z = np.hstack([self._hs[o - self._start], self._features(y, o)[:, :2]])
        d = z @ self.head_w.T + self.head_b
        return self._assemble(y, origins, d, horizon)

    def describe(self) -> dict[str, Any]:
        return {"model_file": self.weights.path.name, "hidden": self.weights.hidden,
                "period": self.period, "scale": self.scale, "head_horizon": self.head_horizon,
                "trained_on": self.weights.meta.get("trained_on")}
