"""``gridswarm forecast SERIES.csv --step SECONDS --horizon STEPS [--model NAME|auto]``.

Reads a meter series and prints JSON with the point forecast and the 80 % / 95 % intervals for
the steps after the series ends, and which model produced them. Input CSV (header optional):

- ``timestamp,value`` — timestamps as epoch seconds or ISO 8601 (naive = UTC); rows may come
  in any order; the step is inferred (median spacing) unless ``--step`` is given; missing
  steps become gaps, which the forecaster imputes (and says so on stderr);
- ``value`` — one column, one row per step; ``--step`` is then required and ``--start`` (epoch
  s, default 0) dates the first row.

Exit codes: 0 ok, 2 bad input or arguments (message on stderr), 1 unexpected failure.
Also runnable alone: ``python -m agent.forecast.cli ...``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from agent.forecast.errors import ForecastError
from agent.forecast.factory import make_forecaster
from agent.forecast.registry import MODEL_NAMES

logger = logging.getLogger(__name__)


class SeriesFormatError(ForecastError, ValueError):
    """The CSV cannot be read as a time series."""


def _parse_ts(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise SeriesFormatError(f"bad timestamp {text!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _parse_value(text: str, line: int) -> float:
    t = text.strip()
    if t == "" or t.lower() in {"nan", "na", "null", "none"}:
        return math.nan
    try:
        return float(t)
    except ValueError as exc:
        raise SeriesFormatError(f"line {line}: value {text!r} is not a number") from exc


def read_series(path: Path, step: float | None = None, start: float = 0.0
                ) -> tuple[np.ndarray, float, float]:
    """(values on a regular grid with NaN gaps, time stamp of the first, step seconds)."""
    try:
        with open(path, newline="") as fh:
            rows = [r if any(c.strip() for c in r) else [] for r in csv.reader(fh)]
    except OSError as exc:
        raise SeriesFormatError(f"cannot read {path}: {exc.strerror or exc}") from exc
    while rows and not rows[-1]:
        rows.pop()  # trailing blank lines
    if any(len(r) > 1 for r in rows):
        rows = [r for r in rows if r]  # timestamped: a blank line is no row
    else:
        rows = [r or [""] for r in rows]  # one column: a blank line is a missing value
    if not rows:
        raise SeriesFormatError(f"{path} is empty")
    first_line = 1
    try:
        float(rows[0][-1])
    except ValueError:
        if rows[0][-1].strip().lower() not in {"nan", "", "na", "null", "none"}:
            rows = rows[1:]  # header
            first_line = 2
    if not rows:
        raise SeriesFormatError(f"{path} has a header but no data")
    width = {len(r) for r in rows}
    if width == {1}:
        if step is None:
            raise SeriesFormatError("a single-column series needs --step")
        vals = np.array([_parse_value(r[0], i + first_line) for i, r in enumerate(rows)])
        return vals, float(start), float(step)
    if not width <= {2}:
        raise SeriesFormatError(f"expected 1 or 2 columns (timestamp,value), got {sorted(width)}")
    ts = np.array([_parse_ts(r[0]) for r in rows])
    vals = np.array([_parse_value(r[1], i + first_line) for i, r in enumerate(rows)])
    order = np.argsort(ts, kind="stable")
    ts, vals = ts[order], vals[order]
    if len(ts) > 1:
        d = np.diff(ts)
        d = d[d > 0]
        inferred = float(np.median(d)) if len(d) else None
    else:
        inferred = None
    if step is None:
        if inferred is None:
            raise SeriesFormatError("cannot infer the step from fewer than two time stamps; "
                                    "pass --step")
        step = inferred
    idx = np.round((ts - ts[0]) / step).astype(np.int64)
    off = np.abs((ts - ts[0]) / step - idx)
    if np.any(off > 0.25):
        raise SeriesFormatError(f"time stamps are not on a {step:g} s grid "
                                f"(worst offset {off.max() * step:.0f} s)")
    n = int(idx[-1]) + 1
    if n > 10 * len(ts) + 1000:
        raise SeriesFormatError(f"time stamps span {n} steps of {step:g} s for {len(ts)} "
                                "rows: wrong --step?")
    grid = np.full(n, np.nan)
    grid[idx] = vals  # duplicates: the last row wins
    missing = n - len(np.unique(idx))
    if missing:
        logger.warning("forecast: %d step(s) missing from %s; the forecaster imputes them",
                       missing, path)
    return grid, float(ts[0]), float(step)


def configure_forecast(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``gridswarm forecast``."""
    parser.add_argument("series", type=Path, help="CSV: timestamp,value or a single value column")
    parser.add_argument("--step", type=float, default=None,
                        help="step length in seconds (required for a single-column series)")
    parser.add_argument("--horizon", type=int, required=True, help="steps to forecast")
    parser.add_argument("--model", default="auto",
                        help=f"model name or auto (default); one of: {', '.join(MODEL_NAMES)}")
    parser.add_argument("--start", type=float, default=0.0,
                        help="epoch seconds of the first row of a single-column series")
    parser.add_argument("--periods", default=None,
                        help="seasonal periods in steps, comma-separated (default: daily, weekly)")
    parser.add_argument("--allow-negative", action="store_true",
                        help="the series may be negative (net load); default treats negative "
                             "values as bad readings")


def run_forecast(args: argparse.Namespace) -> int:
    """Print the forecast as JSON on stdout; clear errors on stderr."""
    try:
        if args.horizon < 1:
            raise SeriesFormatError(f"--horizon must be >= 1, got {args.horizon}")
        if args.step is not None and not args.step > 0:
            raise SeriesFormatError(f"--step must be positive, got {args.step}")
        periods = None
        if args.periods:
            try:
                periods = [int(p) for p in args.periods.split(",") if p.strip()]
            except ValueError as exc:
                raise SeriesFormatError(f"--periods must be integers: {args.periods}") from exc
        values, ts0, step = read_series(args.series, args.step, args.start)
        f = make_forecaster(args.model, step_s=step, seasonal_periods=periods,
                            nonnegative=not args.allow_negative, background=False)
        f.fit(values, ts0)
        fc = f.predict(args.horizon)
    except ForecastError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # pragma: no cover - reported, not swallowed
        print(f"error: unexpected failure: {exc!r}", file=sys.stderr)
        return 1
    out = fc.to_dict()
    out["n_obs"] = int(len(values))
    print(json.dumps(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gridswarm forecast", description=__doc__.splitlines()[0])
    configure_forecast(p)
    return run_forecast(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
