"""Site control on real load data: ``python scripts/bench_site_control.py``.

Sections (figures in ``bench/results/site_control.json``, tables printed as markdown):

``peak``
    Peak shaving with a flywheel of 8 % of the trace's peak power and 15 minutes of energy at
    that power (device defaults otherwise: 95 % one-way efficiency, SoC window 0.05-0.95,
    standing losses 25 %/h), on real measured load traces scaled to a 100 kW site. Per billing
    window (a week for Taylor's half-hourly series, 30 days for the 15-minute SimBench
    profiles) three policies meet the same device model (:class:`agent.devices.storage.StoreModel`):

    - **agent**: the running agent's planner path: :class:`agent.control.peak_plan.PeakPlanner`
      (the object the site planner holds) re-planned every step on a day-ahead forecast from
      the forecaster the agent runs (each step from the model chosen for its horizon:
      :func:`agent.forecast.online.profile_forecast`) — the lowest threshold the flywheel's
      energy holds over the forecast, never below the peak realised in the window, recharging
      only below the charge ceiling; while the forecast is not trusted, the realised peak raised
      to the floor learned from the last 7 days' import (its history starts with the week
      before the first window, as the forecaster's) and to the threshold the forecast's 80 %
      lower bound needs with the energy left; setpoints from
      :func:`agent.control.flywheel.plan_flywheels` (the arbiter's layer 4);
    - **ratchet**: the same without a forecast and without the learned floor (threshold = the
      realised peak; last round's policy);
    - **naive** (no forecast): discharge whatever exceeds the trailing 24 h mean by 5 % of the
      peak, recharge at full power below it;
    - **optimum**: a perfect-foresight LP (:func:`bench.peak_lp.plan_peak_lp`, HiGHS through
      ``highspy``) over the window with the same power, energy, efficiency and standing losses,
      starting from the agent's state of charge.

    Score: peak reduction (W) per window and the agent's share of the optimum's.
``limits``
    What the peak score needs to know, on the same traces and device: the ratchet given the
    window's **hindsight threshold** (the optimum's peak), shifted by -1 kW ... +1 kW, and given
    **perfect foresight** of the step now and 0, 1, 2 or 4 steps beyond it (the lowest threshold
    the flywheel's energy holds them to; with none beyond, that is shaving all it can now). How
    far off a causal estimate of the hindsight threshold is: the window before's, and a quantile
    of the last week's daily thresholds (the learned floor). Scored against the optimum started
    from the readiness level.
``reserve``
    The reserve trigger (:func:`agent.control.reserve.reserve_trigger`, hold 2 steps, a step
    above the threshold confirms an event the forecast missed) against a
    naive threshold trigger on the same traces: an *event* is a step whose demand exceeds
    primary supply (92 % of the peak) plus what the flywheel can sustain; the prediction is
    the agent's one-step 80 % upper bound. Activations, missed events, reserve-on steps.
``forecast``
    The forecaster the agent runs (``auto`` over history-only candidates, chosen per horizon)
    against persistence and the daily seasonal naive at one and two steps ahead (15/30 min on
    SimBench, 30/60 min on Taylor): MAPE and 80 % interval coverage, fit on 4 weeks, rolling
    origin with online updates over the next 2 weeks. No shipped data set has real site load finer
    than 15 minutes (SimBench is the finest), so the 5-minute horizon
    is not measured on real data.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.control.arbiter import StoreView
from agent.control.flywheel import plan_flywheels, sustainable_w
from agent.control.peak_plan import PeakPlanner, StoreBudget, lowest_threshold
from agent.control.reserve import ReserveState, naive_trigger, reserve_trigger
from agent.devices.storage import StoreModel
from agent.forecast.factory import make_forecaster
from agent.forecast.online import CANDIDATES, profile_forecast
from bench.info import machine, write_results
from bench.peak_lp import plan_peak_lp

logger = logging.getLogger(__name__)

SITE_PEAK_W = 100_000.0
FLY_SHARE = 0.08  # flywheel power as a share of the peak (the seed sizes it at 5-10 %)
FLY_HOURS = 0.25  # usable energy at full power
EFF = 0.95
LOSS_PER_H = 0.25
SOC_MIN, SOC_MAX = 0.05, 0.95
READINESS = 0.9  # the planner's default: kept nearly full (see the README's figures for lower levels)


# --------------------------------------------------------------------------- data


def traces(simbench_cache: str | None) -> list[dict[str, Any]]:
    """Real load traces: Taylor (always), SimBench profiles (when exported)."""
    from agent.forecast.datasets import load_simbench, load_taylor

    y, _ts0, step = load_taylor()
    out = [{"name": "taylor", "desc": "pmdarima load_taylor: England & Wales demand, half-hourly, 12 weeks (2000)",
            "y": y, "step_s": step, "window": 336}]
    sb = load_simbench(simbench_cache) if simbench_cache != "none" else None
    if sb is None:
        logger.warning("SimBench profiles not available: 15-minute sections skipped")
        return out
    for col, desc in (("G1-A_pload", "SimBench G1-A commercial site, 15 min, 2016"),
                      ("H0-A_pload", "SimBench H0-A household, 15 min, 2016"),
                      ("lv_urban6_pload", "SimBench LV urban feeder 6 (aggregate), 15 min, 2016")):
        if col in sb:
            out.append({"name": col.removesuffix("_pload"), "desc": desc, "y": sb[col], "step_s": 900.0,
                        "window": 2880})
    return out


def _scaled(y: np.ndarray) -> np.ndarray:
    return np.asarray(y, dtype=float) / float(np.max(y)) * SITE_PEAK_W


# --------------------------------------------------------------------------- devices


def _fly_model(power_w: float, energy_wh: float, soc: float) -> StoreModel:
    cap = energy_wh / (SOC_MAX - SOC_MIN)
    return StoreModel(capacity_wh=cap, max_charge_w=power_w, max_discharge_w=power_w, charge_efficiency=EFF,
                      discharge_efficiency=EFF, loss_per_s=-math.log(1.0 - LOSS_PER_H) / 3600.0, soc=soc,
                      soc_min=SOC_MIN, soc_max=SOC_MAX)


def _view(m: StoreModel, power_w: float) -> StoreView:
    return StoreView("fly", "flywheel", m.soc, m.capacity_wh, power_w if m.soc < SOC_MAX else 0.0,
                     power_w if m.soc > SOC_MIN else 0.0, -power_w, power_w, soc_min=SOC_MIN, soc_max=SOC_MAX,
                     discharge_efficiency=EFF, charge_efficiency=EFF, standing_loss_per_h=LOSS_PER_H)


def _profile_forecaster(step_s: float, y_hist: np.ndarray) -> Any:
    """The demand forecaster as the running agent configures it (agent/forecast/online.py)."""
    f = make_forecaster("auto", step_s=step_s, background=False, nonnegative=True, candidates=list(CANDIDATES),
                        calib_horizon=12, calib_window=500, select_horizon=1)
    f.fit(y_hist, 0.0)
    return f


def _one_step_forecaster(step_s: float, y_hist: np.ndarray) -> Any:
    f = make_forecaster("auto", step_s=step_s, background=False, nonnegative=True, candidates=list(CANDIDATES),
                        calib_horizon=4, calib_window=500, select_horizon=1)
    f.fit(y_hist, 0.0)
    return f


# --------------------------------------------------------------------------- peak shaving


def lp_optimum(x: np.ndarray, step_s: float, power_w: float, energy_wh: float, e0_wh: float) -> float:
    """Lowest achievable peak import (W) over ``x`` with perfect foresight (HiGHS)."""
    cap = energy_wh / (SOC_MAX - SOC_MIN)
    plan = plan_peak_lp(x, step_s, power_w=power_w, e_min_wh=SOC_MIN * cap, e_max_wh=SOC_MAX * cap, e0_wh=e0_wh,
                        efficiency=EFF, loss_per_h=LOSS_PER_H)
    if plan is None:
        raise RuntimeError("HiGHS found no optimum")
    return plan.peak_w


def run_policy(kind: str, x: np.ndarray, step_s: float, power_w: float, energy_wh: float, start: int,
               window: int, readiness: float = READINESS) -> dict[str, Any]:
    """Simulate ``kind`` from step ``start``; per-window peaks and the energy at window starts.

    ``agent``: the running agent's planner path — :class:`agent.control.peak_plan.PeakPlanner`
    (the object :class:`agent.control.planner.SitePlanner` holds) planned every step on the
    forecaster the agent runs (``auto`` over the same candidates and calibration as
    :class:`agent.forecast.online.SiteForecaster`, a day ahead), setpoints from
    :func:`agent.control.flywheel.plan_flywheels` (the arbiter's layer 4) with the plan's shave
    threshold and charge ceiling. ``ratchet``: the same without a forecast (threshold = the peak
    realised in the window, last round's policy). ``naive``: no forecast, no window."""
    day = int(round(86400 / step_s))
    m = _fly_model(power_w, energy_wh, readiness)
    cap = m.capacity_wh
    fc = _profile_forecaster(step_s, x[:start]) if kind == "agent" else None
    # the ratchet is last round's policy: no learned floor (prior_days=0)
    pk = PeakPlanner(step_s, window_s=window * step_s, prior_days=7 if kind == "agent" else 0)
    for t in range(max(0, start - 7 * day), start):  # the metered history the agent has (as the forecaster)
        pk.observe((t - start) * step_s, float(x[t]))
    grid = np.zeros(len(x))
    e_at: dict[int, float] = {}
    planned = 0
    prev_first: float | None = None
    for t in range(start, len(x)):
        ts = (t - start) * step_s
        if (t - start) % window == 0:
            e_at[t] = m.energy_wh
            pk.start_window(ts)
        xt = float(x[t])
        hist = x[max(0, t - day):t]
        if kind in ("agent", "ratchet"):
            budget = StoreBudget(power_w, max(0.0, m.energy_wh - SOC_MIN * cap), (SOC_MAX - SOC_MIN) * cap, EFF,
                                 LOSS_PER_H)
            point = lower = None
            err = 0.0
            if fc is not None:
                f = profile_forecast(fc, day)  # as SiteForecaster builds the import profile
                point, lower = f.point, f.lower80
                if prev_first is not None:
                    err = float(x[t - 1]) - prev_first  # the last metered step against its forecast
                prev_first = float(point[0])
            plan = pk.plan(ts, budget, point, lower, error_w=err)
            thr = xt if plan is None else plan.shave_above_w
            ceil = xt if plan is None else plan.charge_below_w
            planned += int(plan is not None and plan.planned_w is not None)
            want = plan_flywheels([_view(m, power_w)], t=ts, dt=step_s, excess_w=max(0.0, xt - thr),
                                  headroom_w=ceil - xt, readiness_soc=readiness)[0][0]
        else:
            mean = float(np.mean(hist)) + 0.05 * SITE_PEAK_W
            want = power_w if xt > mean else -power_w
        got = m.step(want, step_s)  # terminal power; conversion losses are inside the model
        grid[t] = xt - got
        pk.record(ts, grid[t])
        pk.observe(ts, xt)  # import with storage idle (SitePlanner.observe)
        if fc is not None:
            fc.update([xt])
    return {"grid": grid, "e_at": e_at, "lost_wh": m.lost_wh, "throughput_wh": m.throughput_wh,
            "planned_steps": planned}


def bench_peak(tr: dict[str, Any], windows: int = 0) -> dict[str, Any]:
    x = _scaled(tr["y"])
    step, window = tr["step_s"], tr["window"]
    day = int(round(86400 / step))
    start = 7 * day  # a week of history before the first window
    if windows > 0:  # only the first ``windows`` billing windows (a shorter run)
        x = x[:start + windows * window]
    power = FLY_SHARE * SITE_PEAK_W
    energy = power * FLY_HOURS
    agent = run_policy("agent", x, step, power, energy, start, window)
    ratchet = run_policy("ratchet", x, step, power, energy, start, window)
    naive = run_policy("naive", x, step, power, energy, start, window)
    rows = []
    for w0 in range(start, len(x) - window + 1, window):
        seg = x[w0:w0 + window]
        opt = lp_optimum(seg, step, power, energy, agent["e_at"][w0])
        base = float(seg.max())
        rows.append({"window_start_step": w0, "peak_w": round(base, 1),
                     "optimum_reduction_w": round(base - opt, 1),
                     "agent_reduction_w": round(base - float(agent["grid"][w0:w0 + window].max()), 1),
                     "ratchet_reduction_w": round(base - float(ratchet["grid"][w0:w0 + window].max()), 1),
                     "naive_reduction_w": round(base - float(naive["grid"][w0:w0 + window].max()), 1)})
    tot = {k: sum(r[k] for r in rows) for k in ("optimum_reduction_w", "agent_reduction_w", "ratchet_reduction_w",
                                                 "naive_reduction_w")}
    share = [r["agent_reduction_w"] / r["optimum_reduction_w"] for r in rows if r["optimum_reduction_w"] > 1]
    return {
        "data": tr["desc"], "step_s": step, "windows": len(rows), "window_steps": window,
        "flywheel": {"power_w": power, "energy_wh": energy, "efficiency_one_way": EFF,
                     "standing_loss_per_h": LOSS_PER_H, "soc_window": [SOC_MIN, SOC_MAX]},
        "agent_share_of_optimum_total": round(tot["agent_reduction_w"] / tot["optimum_reduction_w"], 4)
        if tot["optimum_reduction_w"] > 0 else None,
        "naive_share_of_optimum_total": round(tot["naive_reduction_w"] / tot["optimum_reduction_w"], 4)
        if tot["optimum_reduction_w"] > 0 else None,
        "ratchet_share_of_optimum_total": round(tot["ratchet_reduction_w"] / tot["optimum_reduction_w"], 4)
        if tot["optimum_reduction_w"] > 0 else None,
        "agent_share_per_window": [round(r["agent_reduction_w"] / r["optimum_reduction_w"], 3)
                                   if r["optimum_reduction_w"] > 1 else None for r in rows],
        "agent_planned_steps": agent["planned_steps"],
        "agent_share_of_optimum_median_window": round(float(np.median(share)), 4) if share else None,
        "mean_reduction_pct_of_peak": {k: round(100 * v / sum(r["peak_w"] for r in rows), 3) for k, v in tot.items()},
        "agent_flywheel_standing_and_conversion_loss_wh": round(agent["lost_wh"], 1),
        "windows_detail": rows,
    }


# --------------------------------------------------------------------------- what the score needs


def run_thresholds(x: np.ndarray, step_s: float, power_w: float, energy_wh: float, start: int, window: int,
                   threshold_of: Any, readiness: float = READINESS) -> np.ndarray:
    """Import after the flywheel when step ``t``'s threshold (and charge ceiling) is
    ``max(realised peak, threshold_of(t, budget))``; setpoints as the agent's (``plan_flywheels``)."""
    m = _fly_model(power_w, energy_wh, readiness)
    cap = m.capacity_wh
    grid = np.zeros(len(x))
    realised = 0.0
    for t in range(start, len(x)):
        if (t - start) % window == 0:
            realised = 0.0
        xt = float(x[t])
        budget = StoreBudget(power_w, max(0.0, m.energy_wh - SOC_MIN * cap), (SOC_MAX - SOC_MIN) * cap, EFF,
                             LOSS_PER_H)
        thr = max(realised, float(threshold_of(t, budget, realised)))
        want = plan_flywheels([_view(m, power_w)], t=(t - start) * step_s, dt=step_s, excess_w=max(0.0, xt - thr),
                              headroom_w=thr - xt, readiness_soc=readiness)[0][0]
        grid[t] = xt - m.step(want, step_s)
        realised = max(realised, grid[t])
    return grid


def bench_limits(tr: dict[str, Any], windows: int = 0, shifts_w: Sequence[float] = (-1000.0, -300.0, 0.0, 300.0,
                                                                                      1000.0),
                 foresight_steps: Sequence[int] = (1, 2, 3, 5)) -> dict[str, Any]:
    """How precisely the window's threshold must be known, and what foresight would give."""
    x = _scaled(tr["y"])
    step, window = tr["step_s"], tr["window"]
    day = int(round(86400 / step))
    start = 7 * day
    whole = (len(x) - start) // window if windows <= 0 else min(windows, (len(x) - start) // window)
    x = x[:start + whole * window]  # whole windows only
    power = FLY_SHARE * SITE_PEAK_W
    energy = power * FLY_HOURS
    e0 = _fly_model(power, energy, READINESS).energy_wh  # every policy starts at the readiness level
    starts = list(range(start, len(x) - window + 1, window))
    opt = {w0: lp_optimum(x[w0:w0 + window], step, power, energy, e0) for w0 in starts}
    full = StoreBudget(power, energy, energy, EFF, LOSS_PER_H)
    daily = [lowest_threshold(list(x[i * day:(i + 1) * day]), step, full) for i in range(len(x) // day)]

    def share(grid: np.ndarray) -> float:
        got = sum(float(x[w0:w0 + window].max() - grid[w0:w0 + window].max()) for w0 in starts)
        best = sum(float(x[w0:w0 + window].max()) - opt[w0] for w0 in starts)
        return round(100 * got / best, 1)

    def window_of(t: int) -> int:
        return start + ((t - start) // window) * window

    hindsight = {}
    for dw in shifts_w:
        g = run_thresholds(x, step, power, energy, start, window, lambda t, b, r, dw=dw: opt[window_of(t)] + dw)
        hindsight[f"{dw:+.0f} W"] = share(g)
    foresight = {}
    for k in foresight_steps:
        g = run_thresholds(x, step, power, energy, start, window,
                           lambda t, b, r, k=k: lowest_threshold(list(x[t:t + k]), step, b, floor_w=r))
        foresight[f"+{k - 1} steps ({(k - 1) * step / 60:g} min)"] = share(g)  # beyond the step now
    # causal estimates of the window's threshold, against it (W)
    prev_err, floor_err = [], []
    for i, w0 in enumerate(starts):
        if i > 0:
            prev_err.append(abs(opt[starts[i - 1]] - opt[w0]))  # the window before's optimum peak
        d0 = w0 // day
        floor_err.append(abs(float(np.quantile(daily[max(0, d0 - 7):d0], 0.75)) - opt[w0]))
    return {"data": tr["desc"], "step_s": step, "windows": len(starts),
            "optimum_reduction_mean_w": round(float(np.mean([x[w0:w0 + window].max() - opt[w0] for w0 in starts])), 1),
            "share_of_optimum_pct_given_hindsight_threshold_shifted_by": hindsight,
            "share_of_optimum_pct_given_foresight_of": foresight,
            "causal_estimate_mean_abs_error_w": {"window_before": int(round(float(np.mean(prev_err)))) if prev_err
                                                 else None, "last_week_q75": int(round(float(np.mean(floor_err))))}}


# --------------------------------------------------------------------------- reserve trigger


def bench_reserve(tr: dict[str, Any], hold_steps: int = 2, primary_share: float = 0.92) -> dict[str, Any]:
    x = _scaled(tr["y"])
    step = tr["step_s"]
    day = int(round(86400 / step))
    start = 7 * day
    power = FLY_SHARE * SITE_PEAK_W
    energy = power * FLY_HOURS
    primary = primary_share * SITE_PEAK_W
    m = _fly_model(power, energy, READINESS)
    fc = _one_step_forecaster(step, x[:start])
    ours, naive = ReserveState(), ReserveState()
    events = missed_ours = missed_naive = on_ours = on_naive = 0
    for t in range(start, len(x)):
        xt = float(x[t])
        pred = float(fc.predict(1).upper80[0])
        v = _view(m, power)
        avail = sustainable_w(v, step)
        thr = primary + avail
        # the flywheel's share of the threshold is what it sustains for a whole step: a step above
        # it is one the flywheel cannot ride through (confirm_s=0, as the arbiter's sustain window)
        ours = reserve_trigger(ours, t * step, actual_w=xt, predicted_w=pred, threshold_w=thr,
                               hold_s=hold_steps * step, confirm_s=0.0)
        naive = naive_trigger(naive, t * step, actual_w=xt, threshold_w=thr)
        if xt > thr:
            events += 1
            missed_ours += not ours.active
            missed_naive += not naive.active
        on_ours += ours.active
        on_naive += naive.active
        # the flywheel shaves above primary; the reserve covers what is left
        want = min(power, max(0.0, xt - primary)) if xt > primary else -min(power, primary - xt)
        m.step(want, step)
        fc.update([xt])
    return {"data": tr["desc"], "primary_w": primary, "hold_s": hold_steps * step, "event_steps": events,
            "ours": {"activations": ours.activations, "missed_event_steps": missed_ours, "on_steps": on_ours},
            "naive": {"activations": naive.activations, "missed_event_steps": missed_naive, "on_steps": on_naive}}


# --------------------------------------------------------------------------- forecasts


def bench_forecast(tr: dict[str, Any], fit_days: int = 28, test_days: int = 14) -> dict[str, Any]:
    y = np.asarray(tr["y"], dtype=float)
    step = tr["step_s"]
    day = int(round(86400 / step))
    # a stretch away from the start of the year (winter, SimBench) / the whole of Taylor's series
    first = 0 if len(y) < 100 * day else 60 * day
    n_fit, n_test = fit_days * day, test_days * day
    y = y[first:first + n_fit + n_test]
    horizons = (1, 2)
    out: dict[str, Any] = {"data": tr["desc"], "step_s": step, "fit_steps": n_fit, "test_origins": n_test - 2,
                           "horizons_min": [h * step / 60 for h in horizons], "models": {}}
    for name in ("auto", "persistence", "seasonal_naive_daily"):
        kw: dict[str, Any] = {"candidates": list(CANDIDATES), "select_horizon": 1} if name == "auto" else {}
        f = make_forecaster(name, step_s=step, background=False, nonnegative=True, calib_horizon=4,
                            calib_window=500, **kw)
        f.fit(y[:n_fit], 0.0)
        pts = {h: [] for h in horizons}
        lo = {h: [] for h in horizons}
        hi = {h: [] for h in horizons}
        act = {h: [] for h in horizons}
        chosen: dict[int, set[str]] = {h: set() for h in horizons}
        t0 = time.perf_counter()
        for i in range(n_fit, len(y) - max(horizons)):
            for h in horizons:
                fc = f.predict(h)
                pts[h].append(float(fc.point[h - 1]))
                lo[h].append(float(fc.lower80[h - 1]))
                hi[h].append(float(fc.upper80[h - 1]))
                act[h].append(float(y[i + h - 1]))
                if name == "auto":
                    chosen[h].add(f.choice_for(h))
            f.update([y[i]])
        res = {}
        for h in horizons:
            p, a = np.array(pts[h]), np.array(act[h])
            ok = a > 0
            res[f"{h * step / 60:g} min"] = {
                "mape_pct": round(float(np.mean(np.abs(p[ok] - a[ok]) / a[ok]) * 100), 3),
                # what auto selects on (and what a threshold in watts is off by): absolute error,
                # in % of the series' mean over the test
                "mae_pct_of_mean": round(float(np.mean(np.abs(p - a)) / np.mean(a) * 100), 3),
                "cover80": round(float(np.mean((np.array(lo[h]) <= a) & (a <= np.array(hi[h])))), 3),
                **({"models_used": sorted(chosen[h])} if name == "auto" else {}),
            }
        res["seconds"] = round(time.perf_counter() - t0, 2)
        out["models"][name] = res
    for h in horizons:
        key = f"{h * step / 60:g} min"
        best = min(out["models"][b][key]["mape_pct"] for b in ("persistence", "seasonal_naive_daily"))
        out.setdefault("auto_vs_best_baseline", {})[key] = round(out["models"]["auto"][key]["mape_pct"] - best, 3)
    return out


# --------------------------------------------------------------------------- driver


def _tables(res: dict[str, Any]) -> str:
    lines = []
    if "peak" in res:
        lines += ["| trace | step | windows | optimum | agent | ratchet (no forecast) | naive | agent / optimum |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, r in res["peak"].items():
            m = r["mean_reduction_pct_of_peak"]
            lines.append(f"| {name} | {r['step_s'] / 60:g} min | {r['windows']} | {m['optimum_reduction_w']:.2f} % | "
                         f"{m['agent_reduction_w']:.2f} % | {m['ratchet_reduction_w']:.2f} % | "
                         f"{m['naive_reduction_w']:.2f} % | "
                         f"{100 * (r['agent_share_of_optimum_total'] or 0):.1f} % |")
        lines.append("")
    if "limits" in res:
        r0 = next(iter(res["limits"].values()))
        shifts = list(r0["share_of_optimum_pct_given_hindsight_threshold_shifted_by"])
        ahead = [k.split(" (")[0] for k in r0["share_of_optimum_pct_given_foresight_of"]]
        lines += ["| trace | hindsight threshold " + " / ".join(shifts) + " | foresight " + " / ".join(ahead)
                  + " | causal estimate off by (window before / last week) |", "|---|---|---|---|"]
        for name, r in res["limits"].items():
            h = r["share_of_optimum_pct_given_hindsight_threshold_shifted_by"]
            f = r["share_of_optimum_pct_given_foresight_of"]
            e = r["causal_estimate_mean_abs_error_w"]
            lines.append(f"| {name} | " + " / ".join(f"{v:.0f} %" for v in h.values()) + " | "
                         + " / ".join(f"{v:.0f} %" for v in f.values())
                         + f" | {e['window_before']} / {e['last_week_q75']} W |")
        lines.append("")
    if "reserve" in res:
        lines += ["| trace | event steps | ours: activations / missed / on | naive: activations / missed / on |",
                  "|---|---|---|---|"]
        for name, r in res["reserve"].items():
            o, n = r["ours"], r["naive"]
            lines.append(f"| {name} | {r['event_steps']} | {o['activations']} / {o['missed_event_steps']} / "
                         f"{o['on_steps']} | {n['activations']} / {n['missed_event_steps']} / {n['on_steps']} |")
        lines.append("")
    if "forecast" in res:
        lines += ["| series | horizon | auto MAPE (cover80) | persistence | seasonal naive daily |", "|---|---|---|---|---|"]
        for name, r in res["forecast"].items():
            for key in r["models"]["auto"]:
                if key == "seconds":
                    continue
                cells = [f"{r['models'][m][key]['mape_pct']:.2f} % ({r['models'][m][key]['cover80']:.2f})"
                         for m in ("auto", "persistence", "seasonal_naive_daily")]
                lines.append(f"| {name} | {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_site_control", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results/site_control.json")
    p.add_argument("--sections", default="peak,limits,reserve,forecast")
    p.add_argument("--windows", type=int, default=0, help="peak: only the first N billing windows (0: all)")
    p.add_argument("--traces", default="", help="comma-separated trace names (default all): taylor,G1-A,H0-A,lv_urban6")
    p.add_argument("--simbench-cache", default=None, help="SimBench .npz (default cache/simbench_profiles.npz); "
                                                          "'none' to skip")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("agent.forecast").setLevel(logging.ERROR)
    sections = [s for s in args.sections.split(",") if s]
    t0 = time.perf_counter()
    res: dict[str, Any] = {}
    wanted = {s for s in args.traces.split(",") if s}
    for tr in traces(args.simbench_cache):
        if wanted and tr["name"] not in wanted:
            continue
        if "peak" in sections:
            res.setdefault("peak", {})[tr["name"]] = bench_peak(tr, args.windows)
        if "limits" in sections:
            res.setdefault("limits", {})[tr["name"]] = bench_limits(tr, args.windows)
        if "reserve" in sections:
            res.setdefault("reserve", {})[tr["name"]] = bench_reserve(tr)
        if "forecast" in sections:
            res.setdefault("forecast", {})[tr["name"]] = bench_forecast(tr)
    from importlib.metadata import version

    run = {"command": "python scripts/bench_site_control.py " + " ".join(argv or []),
           "machine": machine(numpy=np.__version__, highspy=version("highspy")),
           "elapsed_s": round(time.perf_counter() - t0, 1)}
    out: dict[str, Any] = {**run, **res}
    if wanted and Path(args.out).exists():
        # a run of some traces updates their figures in the existing file (each run is recorded)
        import json

        out = json.loads(Path(args.out).read_text())
        for section, per_trace in res.items():
            out.setdefault(section, {}).update(per_trace)
        out.setdefault("runs", []).append(run)
    write_results(args.out, out)
    print(_tables(res))
    return 0
