"""The flywheel plan as a small linear programme (HiGHS through ``highspy``; ~5 MB, no scipy).

Over a forecast of site import ``x`` (one value per step, the first being now), choose charge
``c_t`` and discharge ``d_t`` (W at the terminals, within the device's power) and the stored
energy ``e_t`` (Wh after step ``t``) to make the peak import ``p`` as low as possible, with the
device's own dynamics (:meth:`agent.devices.storage.StoreModel.step`):

    e_t = keep * (e_{t-1} + eta * h * c_t - h / eta * d_t),    keep = (1 - loss_per_h) ** h
    e_min <= e_{t-1} + eta * h * c_t - h / eta * d_t <= e_max   (i.e. keep * e_min <= e_t <= keep * e_max)
    x_t - d_t + c_t <= p,   x_t - d_t + c_t >= 0 (never export to shave),   p >= floor_w

The SoC window bounds the energy **before** the step's standing losses, where the device model
clamps it (charging stops at ``soc_max``, then the step's losses apply). Bounding ``e_t`` after
the losses instead let the plan start a step with up to ``e_max / keep`` stored (102 % of the
capacity at 15-minute steps with 25 %/h losses, 110 % at 30 minutes): an optimum no device
can reach, even executing the plan itself.

A tiny cost on ``c + d`` removes pointless cycling and, with standing losses, makes the plan
charge **as late as it can** before a peak. The planner re-solves every step on a fresh forecast
(model-predictive control) and uses ``p`` as the peak threshold and ``e_0`` as the charge to
reach by the end of the current step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LPPlan", "plan_peak_lp"]


@dataclass(frozen=True, slots=True)
class LPPlan:
    peak_w: float  # lowest peak import the store can hold over the forecast
    energy_after_first_wh: float  # planned stored energy at the end of the first step
    charge_first_w: float  # planned charge (>= 0) in the first step
    discharge_first_w: float  # planned discharge (>= 0) in the first step


def plan_peak_lp(x: Sequence[float], step_s: float, *, power_w: float, e_min_wh: float, e_max_wh: float,
                 e0_wh: float, efficiency: float = 0.95, loss_per_h: float = 0.0, floor_w: float = 0.0,
                 charge_w: float | None = None) -> LPPlan | None:
    """Solve the plan; None when HiGHS finds no optimum (the caller keeps its fallback)."""
    import highspy

    xs = np.asarray(x, dtype=float)
    n = len(xs)
    if n == 0 or not np.all(np.isfinite(xs)) or not (e_max_wh > e_min_wh >= 0):
        return None
    chg = power_w if charge_w is None else charge_w
    h = step_s / 3600.0
    keep = (1.0 - loss_per_h) ** h if 0.0 < loss_per_h < 1.0 else 1.0
    e0 = min(max(e0_wh, 0.0), e_max_wh)
    # columns: c (0..n-1), d (n..2n-1), e (2n..3n-1), p (3n)
    rows, cols, vals = [], [], []
    t = np.arange(n)
    # balance rows 0..n-1
    rows += [t, t, t, t[1:]]
    cols += [t, n + t, 2 * n + t, 2 * n + t[:-1]]
    vals += [np.full(n, -keep * efficiency * h), np.full(n, keep * h / efficiency), np.ones(n), np.full(n - 1, -keep)]
    # peak rows n..2n-1: c - d - p <= -x
    rows += [n + t, n + t, n + t]
    cols += [t, n + t, np.full(n, 3 * n)]
    vals += [np.ones(n), -np.ones(n), -np.ones(n)]
    # no-export rows 2n..3n-1: c - d >= -x
    rows += [2 * n + t, 2 * n + t]
    cols += [t, n + t]
    vals += [np.ones(n), -np.ones(n)]
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    order = np.lexsort((r, c))
    r, c, v = r[order], c[order], v[order]
    ncol, nrow = 3 * n + 1, 3 * n
    start = np.concatenate([[0], np.cumsum(np.bincount(c, minlength=ncol))])

    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = ncol, nrow
    cost = np.full(ncol, 1e-6)
    cost[3 * n] = 1.0
    lp.col_cost_ = cost
    inf = highspy.kHighsInf
    # the SoC window holds before the step's standing losses (module docstring)
    lp.col_lower_ = np.concatenate([np.zeros(2 * n), np.full(n, keep * e_min_wh), [max(0.0, floor_w)]])
    lp.col_upper_ = np.concatenate([np.full(n, chg), np.full(n, power_w), np.full(n, keep * e_max_wh), [inf]])
    b0 = np.zeros(n)
    b0[0] = keep * e0
    lp.row_lower_ = np.concatenate([b0, np.full(n, -inf), -xs])
    lp.row_upper_ = np.concatenate([b0, -xs, np.full(n, inf)])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = start.astype(np.int32)
    lp.a_matrix_.index_ = r.astype(np.int32)
    lp.a_matrix_.value_ = v
    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    solver.passModel(lp)
    solver.run()
    if solver.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    sol = np.asarray(solver.getSolution().col_value)
    p = float(sol[3 * n])
    if not math.isfinite(p):
        return None
    return LPPlan(p, float(sol[2 * n]), float(sol[0]), float(sol[n]))
