"""Forecast benchmark on real data: ``gridswarm bench forecast`` / ``scripts/bench_forecast.py``.

Sections (each written to ``bench/results/forecast.json``, tables printed as markdown):

``taylor``
    England & Wales half-hourly demand (pmdarima ``load_taylor``): fit on weeks 1-8, then a
    rolling origin over weeks 9-12 — at every half hour each forecaster predicts 96 steps,
    is scored at 30 min, 1 h, 3 h, 6 h and 24 h, and then receives the actual value (online
    update, as on a gateway). MAPE, MASE (scaled by the in-sample MAE of the weekly seasonal
    naive, weeks 1-8), and empirical coverage of the 80 % / 95 % intervals (all horizons 1-48).
``simbench``
    SimBench 2016 profiles at 15 minutes (optional extra; skipped when absent): single sites
    (households H0-*, commercial G*, agricultural L1-A, PV*) and aggregates (LV feeder
    profiles, the sum of the eight PV profiles); a winter and a summer window, each fit on 8
    weeks and tested on the following 2 weeks; MAPE (loads) / sMAPE and nMAE (all) at 15, 30
    and 60 minutes, coverage at the same horizons.
``pv``
    PV output from pvlib on Greensboro TMY3 weather (hourly): the "actual" is pvlib's PVWatts
    chain on the measured TMY irradiance; :class:`~agent.forecast.pv.PVForecaster` forecasts
    it from the clear-sky model and the recent clear-sky index (no weather forecast), against
    persistence and yesterday-same-hour; nMAE (MAE / mean daytime power) at 1 h, 3 h, 24 h
    over daylight hours, coverage.

``auto`` is asked as the agent asks it (:func:`agent.forecast.online.profile_forecast`): each step
of the 96 from the candidate chosen for that step's horizon. Asked ``predict(96)``, it uses the
one model best on average over the whole day, which is not the one best 15 minutes ahead.

Gateway cost: median ``predict(96)`` (for ``auto``, the profile) and ``update`` times (µs)
measured on this machine during the Taylor run, and the model's file / state size in bytes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.forecast.datasets import ROOT
from agent.forecast.factory import make_forecaster
from agent.forecast.online import profile_forecast
from agent.forecast.registry import MODEL_NAMES

logger = logging.getLogger(__name__)

DEFAULT_OUT = ROOT / "bench" / "results" / "forecast.json"
MODELS = (*MODEL_NAMES, "auto")
PREDICT_STEPS = 96


def _metrics(points: np.ndarray, bands: dict[str, np.ndarray], actual: np.ndarray,
             horizons: Sequence[int], mase_scale: float | None, norm: float | None
             ) -> dict[str, Any]:
    """Per-horizon accuracy and coverage; arrays are (origins, H) with NaN where no actual."""
    out: dict[str, Any] = {}
    for h in horizons:
        f = points[:, h - 1]
        a = actual[:, h - 1]
        ok = np.isfinite(a)
        f, a = f[ok], a[ok]
        err = np.abs(f - a)
        row: dict[str, Any] = {"n": int(ok.sum()), "mae": float(err.mean())}
        pos = a > 0
        row["mape"] = float(100 * np.mean(err[pos] / a[pos])) if pos.all() else None
        denom = np.abs(f) + np.abs(a)
        row["smape"] = float(100 * np.mean(np.where(denom > 0, 2 * err / np.where(
            denom > 0, denom, 1), 0.0)))
        if mase_scale:
            row["mase"] = float(err.mean() / mase_scale)
        if norm:
            row["nmae"] = float(100 * err.mean() / norm)
        for lvl in ("80", "95"):
            lo = bands["lower" + lvl][:, h - 1][ok]
            hi = bands["upper" + lvl][:, h - 1][ok]
            row["cover" + lvl] = float(np.mean((a >= lo) & (a <= hi)))
        out[str(h)] = row
    return out


def rolling_eval(name: str, y: np.ndarray, ts0: float, step_s: float, n_fit: int,
                 n_test: int, horizons: Sequence[int], cover_h: int,
                 mase_scale: float | None = None, norm: float | None = None,
                 **kw: Any) -> dict[str, Any]:
    """Fit ``name`` on ``y[:n_fit]``, then forecast/update at every step of the test span."""
    f = make_forecaster(name, step_s=step_s, background=False, **kw)
    t0 = time.perf_counter()
    f.fit(y[:n_fit], ts0)
    fit_s = time.perf_counter() - t0
    H = max(max(horizons), cover_h)
    P = np.full((n_test, H), np.nan)
    bands = {k: np.full((n_test, H), np.nan) for k in ("lower80", "upper80", "lower95",
                                                       "upper95")}
    A = np.full((n_test, H), np.nan)
    t_pred = np.empty(n_test)
    t_upd = np.empty(n_test)
    models: dict[str, int] = {}
    for i in range(n_test):
        o = n_fit + i  # index of the first forecast step
        t = time.perf_counter()
        fc = profile_forecast(f, PREDICT_STEPS)  # predict(96), step by step for auto (as the agent)
        t_pred[i] = time.perf_counter() - t
        models[fc.model] = models.get(fc.model, 0) + 1
        P[i] = fc.point[:H]
        bands["lower80"][i] = fc.lower80[:H]
        bands["upper80"][i] = fc.upper80[:H]
        bands["lower95"][i] = fc.lower95[:H]
        bands["upper95"][i] = fc.upper95[:H]
        end = min(len(y), o + H)
        A[i, : end - o] = y[o:end]
        t = time.perf_counter()
        f.update(y[o:o + 1])
        t_upd[i] = time.perf_counter() - t
    res = {
        "model": name,
        "horizons": _metrics(P, bands, A, horizons, mase_scale, norm),
        "coverage_all": {lvl: float(np.nanmean(
            np.where(np.isfinite(A), (A >= bands["lower" + lvl]) & (A <= bands["upper" + lvl]),
                     np.nan)[:, :cover_h])) for lvl in ("80", "95")},
        "fit_s": round(fit_s, 3),
        "predict96_us_median": round(float(np.median(t_pred)) * 1e6, 1),
        "update_us_median": round(float(np.median(t_upd)) * 1e6, 1),
        "update_us_mean": round(float(np.mean(t_upd)) * 1e6, 1),
        "models_used": models,
        "model_bytes": _model_bytes(f),
        "params": _params(f),
    }
    return res


def _model_bytes(f: Any) -> int:
    """Bytes a gateway must store for the model beyond the history itself."""
    from agent.forecast.dshw import DoubleSeasonalES
    from agent.forecast.lstm import LSTMEngine

    target = getattr(f, "candidates", {}).get(getattr(f, "chosen", None), f)
    eng = target.engine
    if isinstance(eng, LSTMEngine):
        return int(eng.weights.path.stat().st_size)
    if isinstance(eng, DoubleSeasonalES):
        return 8 * (eng.s1 + eng.s2 + 6)
    return 0


def _params(f: Any) -> dict[str, Any]:
    if hasattr(f, "candidates"):
        return {"chosen": f.chosen, "scores": f.scores}
    return f.engine.describe()


# ---------------------------------------------------------------------------- sections
def bench_taylor(models: Sequence[str]) -> dict[str, Any]:
    from agent.forecast.datasets import load_taylor

    y, ts0, step = load_taylor()
    n_fit = 8 * 336
    mase_scale = float(np.mean(np.abs(y[336:n_fit] - y[: n_fit - 336])))
    horizons = (1, 2, 6, 12, 48)
    out: dict[str, Any] = {
        "data": "pmdarima load_taylor: England & Wales half-hourly demand, MW, 5 Jun-27 Aug 2000",
        "protocol": "fit weeks 1-8 (2688 steps); rolling origin over weeks 9-12 (1344 "
                    "origins), online update after each; 96-step forecasts",
        "horizon_labels": {"1": "30 min", "2": "1 h", "6": "3 h", "12": "6 h", "48": "24 h"},
        "mase_scale": "in-sample MAE of the weekly seasonal naive on weeks 1-8 "
                      f"({mase_scale:.1f} MW)",
        "coverage_horizons": "1-48",
        "results": {},
    }
    for m in models:
        logger.info("taylor: %s", m)
        out["results"][m] = rolling_eval(m, y, ts0, step, n_fit, len(y) - n_fit, horizons,
                                         48, mase_scale=mase_scale, calib_horizon=96)
    return out


def bench_simbench(models: Sequence[str], cache: Path | None, test_days: int = 14
                   ) -> dict[str, Any]:
    from agent.forecast.datasets import SIMBENCH_LOADS, SIMBENCH_PV, SIMBENCH_START, load_simbench

    data = load_simbench(cache)
    if data is None:
        return {"skipped": "simbench not installed and no cache/simbench_profiles.npz "
                           "(see requirements/simbench.txt)"}
    day = 96
    series: dict[str, tuple[str, np.ndarray]] = {}
    for c in SIMBENCH_LOADS:
        kind = "aggregate (LV feeder)" if c.startswith("lv_") else "single site"
        series[c.removesuffix("_pload")] = (kind, data[c])
    for c in ("PV1", "PV5"):
        series[c] = ("single site PV", data[c])
    series["PV_sum8"] = ("aggregate PV (8 profiles)", sum(data[c] for c in SIMBENCH_PV))
    windows = {"winter": 3 * day, "summer": 150 * day}  # fit start (Jan 4 / May 30, 2016)
    out: dict[str, Any] = {
        "data": "SimBench 1.6.3 profiles, 2016, 15-minute steps (normalised power)",
        "protocol": f"per window: fit 8 weeks, rolling origin over the next {test_days} days "
                    "with online update; MAPE for loads, sMAPE and nMAE (MAE / mean) for all",
        "windows": {k: {"fit_start_day": v // day, "fit_days": 56, "test_days": test_days}
                    for k, v in windows.items()},
        "horizon_labels": {"1": "15 min", "2": "30 min", "4": "60 min"},
        "results": {},
    }
    for wname, start in windows.items():
        for sname, (kind, v) in series.items():
            y = v[start: start + 56 * day + test_days * day + 8] * 1000.0
            norm = float(np.mean(y[56 * day:56 * day + test_days * day]))
            for m in models:
                logger.info("simbench %s %s: %s", wname, sname, m)
                r = rolling_eval(m, y, SIMBENCH_START + start * 900.0, 900.0, 56 * day,
                                 test_days * day, (1, 2, 4), 4, norm=norm, calib_horizon=96)
                r["kind"] = kind
                out["results"].setdefault(wname, {}).setdefault(sname, {})[m] = r
    return out


def bench_pv(test_days: int = 120) -> dict[str, Any]:
    from agent.forecast.pv import pv_benchmark

    return pv_benchmark(test_days=test_days)


# ---------------------------------------------------------------------------- tables
def _fmt(x: float | None, nd: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def taylor_table(sec: dict[str, Any]) -> str:
    hs = list(sec["horizon_labels"].items())
    head = "| model | " + " | ".join(f"MAPE {lab}" for _, lab in hs) + \
        " | MASE 30 min | MASE 24 h | cover 80 % | cover 95 % | predict(96) µs | update µs " \
        "| model bytes |"
    lines = [head, "|" + "---|" * (len(hs) + 8)]
    for m, r in sec["results"].items():
        h = r["horizons"]
        name = m if m != "auto" else f"auto (→ {r['params'].get('chosen')})"
        lines.append(
            f"| {name} | " + " | ".join(_fmt(h[k]["mape"]) for k, _ in hs)
            + f" | {_fmt(h['1'].get('mase'), 3)} | {_fmt(h['48'].get('mase'), 3)}"
            f" | {100 * r['coverage_all']['80']:.1f} | {100 * r['coverage_all']['95']:.1f}"
            f" | {r['predict96_us_median']:.0f} | {r['update_us_median']:.0f}"
            f" | {r['model_bytes']} |")
    return "\n".join(lines)


def simbench_summary(sec: dict[str, Any]) -> str:
    """One row per window and series: the error at 15 / 60 min of the main models.

    MAPE for loads (all values > 0), nMAE (MAE / mean) for PV, whose values reach zero.
    """
    if "skipped" in sec:
        return f"SimBench skipped: {sec['skipped']}"
    show = ("persistence", "level_shift_weekly", "dshw", "lstm", "auto")
    lines = ["| window | series | metric | " + " | ".join(f"{m} 15 / 60 min" for m in show)
             + " | best at 15 min | auto cover 80 / 95 % |",
             "|" + "---|" * (len(show) + 5)]
    for wname, by_series in sec["results"].items():
        for sname, by_model in by_series.items():
            metric = "mape" if by_model["persistence"]["horizons"]["1"]["mape"] is not None \
                else "nmae"
            cells = []
            for m in show:
                if m not in by_model:
                    cells.append("—")
                    continue
                h = by_model[m]["horizons"]
                cells.append(f"{_fmt(h['1'][metric], 1)} / {_fmt(h['4'][metric], 1)}")
            best = min(by_model, key=lambda m: by_model[m]["horizons"]["1"][metric])
            auto = by_model.get("auto")
            cov = (f"{100 * auto['coverage_all']['80']:.0f} / "
                   f"{100 * auto['coverage_all']['95']:.0f}") if auto else "—"
            lines.append(f"| {wname} | {sname} | {metric.upper()} % | " + " | ".join(cells)
                         + f" | {best} | {cov} |")
    return "\n".join(lines)


def simbench_table(sec: dict[str, Any]) -> str:
    if "skipped" in sec:
        return f"SimBench skipped: {sec['skipped']}"
    lines = ["| window | series | kind | model | MAPE 15/30/60 min | sMAPE 15/30/60 min "
             "| nMAE 15/30/60 min | cover 80/95 % |", "|---|---|---|---|---|---|---|---|"]
    for wname, by_series in sec["results"].items():
        for sname, by_model in by_series.items():
            best = min(by_model, key=lambda m: by_model[m]["horizons"]["1"]["mae"])
            for m, r in by_model.items():
                h = r["horizons"]
                tag = f"**{m}**" if m == best else m
                if m == "auto":
                    tag += f" (→ {r['params'].get('chosen')})"
                lines.append(
                    f"| {wname} | {sname} | {r['kind']} | {tag} | "
                    + " / ".join(_fmt(h[k]["mape"], 1) for k in ("1", "2", "4")) + " | "
                    + " / ".join(_fmt(h[k]["smape"], 1) for k in ("1", "2", "4")) + " | "
                    + " / ".join(_fmt(h[k]["nmae"], 1) for k in ("1", "2", "4"))
                    + f" | {100 * r['coverage_all']['80']:.0f} / "
                    f"{100 * r['coverage_all']['95']:.0f} |")
    return "\n".join(lines)


def pv_table(sec: dict[str, Any]) -> str:
    if "skipped" in sec:
        return f"PV skipped: {sec['skipped']}"
    hs = list(sec["horizon_labels"].items())
    lines = ["| model | " + " | ".join(f"nMAE {lab}" for _, lab in hs)
             + " | cover 80 % | cover 95 % |", "|" + "---|" * (len(hs) + 3)]
    for m, r in sec["results"].items():
        lines.append(f"| {m} | " + " | ".join(_fmt(r["horizons"][k]["nmae"], 1) for k, _ in hs)
                     + f" | {_pct(r['cover80'])} | {_pct(r['cover95'])} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- CLI
def configure_bench(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``gridswarm bench forecast``."""
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"JSON results file (default {DEFAULT_OUT.relative_to(ROOT)})")
    parser.add_argument("--sections", default="taylor,simbench,pv",
                        help="comma-separated subset of taylor,simbench,pv")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated models (default: all and auto)")
    parser.add_argument("--simbench-cache", type=Path, default=None,
                        help="SimBench profiles .npz (default cache/simbench_profiles.npz)")
    parser.add_argument("--simbench-days", type=int, default=14,
                        help="test days per SimBench window")
    parser.add_argument("--quiet", action="store_true", help="no progress log on stderr")
    parser.add_argument("--full-tables", action="store_true",
                        help="print every SimBench model and metric, not just the summary")
    parser.add_argument("--tables-only", action="store_true",
                        help="print the tables of an existing --out file without running")


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark, write JSON, print markdown tables; 0 on success."""
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(message)s")
        logging.getLogger("agent.forecast.base").setLevel(logging.ERROR)
        logging.getLogger("agent.forecast.auto").setLevel(logging.WARNING)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        print(f"error: unknown model(s) {unknown}; known: {', '.join(MODELS)}", file=sys.stderr)
        return 2
    if args.tables_only:
        if not args.out.exists():
            print(f"error: {args.out} does not exist", file=sys.stderr)
            return 2
        _print_tables(json.loads(args.out.read_text())["sections"], args)
        return 0
    previous: dict[str, Any] = {}
    if args.out.exists():
        try:
            previous = json.loads(args.out.read_text())
        except ValueError:
            previous = {}
    t0 = time.time()
    result: dict[str, Any] = {
        "command": "python scripts/bench_forecast.py " + " ".join(sys.argv[1:]),
        "machine": {"python": platform.python_version(), "processor": platform.machine(),
                    "cpus": _cpus(), "numpy": np.__version__},
        "sections": dict(previous.get("sections", {})),
    }
    for s in sections:
        t_sec = time.time()
        if s == "taylor":
            result["sections"]["taylor"] = bench_taylor(models)
        elif s == "simbench":
            result["sections"]["simbench"] = bench_simbench(models, args.simbench_cache,
                                                            args.simbench_days)
        elif s == "pv":
            result["sections"]["pv"] = bench_pv()
        else:
            print(f"error: unknown section {s!r}", file=sys.stderr)
            return 2
        result["sections"][s]["command"] = result["command"]
        result["sections"][s]["elapsed_s"] = round(time.time() - t_sec, 1)
    result["elapsed_s"] = round(time.time() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    _print_tables(result["sections"], args)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _print_tables(secs: dict[str, Any], args: argparse.Namespace) -> None:
    if "taylor" in secs:
        print("### England & Wales demand (load_taylor), rolling origin weeks 9-12\n")
        print(taylor_table(secs["taylor"]) + "\n")
    if "simbench" in secs:
        print("### SimBench 15-minute profiles\n")
        print(simbench_summary(secs["simbench"]) + "\n")
        if args.full_tables:
            print(simbench_table(secs["simbench"]) + "\n")
    if "pv" in secs:
        print("### PV (pvlib, Greensboro TMY3)\n")
        print(pv_table(secs["pv"]) + "\n")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_forecast", description=__doc__.splitlines()[0])
    configure_bench(p)
    return run_bench(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
