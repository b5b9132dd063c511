"""Forecast vs actual and the new /metrics queries at full retention.

``python -m bench.forecast_analytics [--sites 100] [--days 7]``: fills a fresh SQLite store with
what the coordinator keeps at most (forecasts are kept ``FORECAST_KEEP_S``, 7 days): for every
site, a ``forecast`` record every 5 minutes (demand and PV, 5 and 15 minutes ahead) and
telemetry every 5 minutes (the agent's default ``telemetry_every_s``) with a load, PV and grid
device; plus a year of settled intervals in the lifecycle table for the settlement latency
histogram. Then times each query (median and worst of ``--repeat`` runs, wall and CPU ms) and
writes ``bench/results/forecast_analytics.json``. Nothing is cached between runs.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.analytics import print_query_report, query_report, time_query
from bench.info import write_results
from coordinator.store import Store
from coordinator.store.analytics import Analytics
from coordinator.store.synthetic import site_address

START_TS = 1_767_225_600.0  # 2026-01-01 00:00 UTC
STEP_S = 300.0


def populate(store: Store, days: int, sites: int, seed: int = 7) -> dict[str, int]:
    rng = random.Random(seed)
    conn = store.db.conn
    steps = int(days * 86_400 / STEP_S)
    n_fc = n_tel = 0
    for s in range(sites):
        addr = site_address(s)
        conn.execute("insert into participants values (?, ?, ?, 1, ?)", (addr, "0x", s % 2, s))
        fc, tel = [], []
        for i in range(steps):
            ts = START_TS + i * STEP_S
            demand = 1500 + 800 * math.sin(2 * math.pi * ts / 86_400) + 200 * rng.random()
            pv = max(0.0, 4000 * math.sin(2 * math.pi * (ts - 21_600) / 86_400))
            devices = {"load0": {"kind": "load", "power_w": -demand}, "pv0": {"kind": "pv", "power_w": pv},
                       "grid0": {"kind": "grid", "power_w": demand - pv}}
            tel.append((addr, i, ts, pv - demand, None, json.dumps(devices), rng.randint(0, 3)))
            for series, value in (("demand", demand), ("pv", pv)):
                for h in (300.0, 900.0):
                    w = 0.1 * value + 50
                    fc.append((addr, series, h, ts + h - STEP_S, ts + h, ts + 1, value, value - w, value + w,
                               value - 2 * w, value + 2 * w, "auto:level_shift_daily", i))
        with store.transaction():
            conn.executemany("insert into telemetry (sender, record_id, ts, net_export_w, soc, devices, outbox_pending)"
                             " values (?, ?, ?, ?, ?, ?, ?)", tel)
            conn.executemany("insert or replace into forecasts (sender, series, horizon_s, target_start, target_end,"
                             " made_ts, point_w, lower80_w, upper80_w, lower95_w, upper95_w, model, record_id)"
                             " values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", fc)
        n_fc += len(fc)
        n_tel += len(tel)
    year = 365 * 96
    with store.transaction():
        conn.executemany(
            "insert into lifecycle (interval, stage, delivery_start, delivery_end, updated) values (?, 'settled', ?, ?, ?)",
            [(k, START_TS + k * 900.0, START_TS + (k + 1) * 900.0, START_TS + (k + 1) * 900.0 + rng.uniform(60, 900))
             for k in range(year)],
        )
    return {"forecasts": n_fc, "telemetry": n_tel, "settled_intervals": year}


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="gridswarm-fc-") as tmp:
        path = Path(tmp) / "bench.sqlite"
        store = Store(path)
        store.db.conn.execute("PRAGMA synchronous=OFF")
        t0 = time.perf_counter()
        a = Analytics(store)
        counts = populate(store, args.days, args.sites)
        build_s = time.perf_counter() - t0
        store.db.conn.execute("ANALYZE")
        end = START_TS + args.days * 86_400
        site = site_address(0)
        mid = a.forecasts(site, since=START_TS + args.days * 43_200, limit=1).next_cursor
        queries: dict[str, Any] = {
            "forecasts_one_site_last_day": lambda: a.forecasts(site, since=end - 86_400, limit=1000),
            "forecasts_one_site_page_mid_week": lambda: a.forecasts(site, cursor=mid, limit=1000),
            "forecasts_one_site_pv_15min": lambda: a.forecasts(site, "pv", 900.0, limit=1000),
            "forecast_error_one_site_day": lambda: a.forecast_error(site),
            "forecast_error_one_site_week": lambda: a.forecast_error(site, since=START_TS),
            "metrics_settlement_latency_year": a.settlement_latency,
            "metrics_outbox_backlog": lambda: a.outbox_backlog(end),
        }
        results = {name: time_query(fn, args.repeat) for name, fn in queries.items()}
        size_mb = path.stat().st_size / 1e6
        store.db.conn.close()
    out = {
        "benchmark": "forecast vs actual and /metrics queries at full forecast retention",
        "days": args.days,
        "sites": args.sites,
        "rows": counts,
        "db_size_mb": round(size_mb, 1),
        "build_seconds": round(build_s, 1),
        "repeat": args.repeat,
        **query_report(results),
    }
    write_results(args.out, out)
    print_query_report(results)
    print(f"worst median {out['worst_median_ms']:.1f} ms over {counts['forecasts']:,} forecasts and {counts['telemetry']:,} telemetry records")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=7, help="days of forecasts and telemetry (default 7, the retention)")
    p.add_argument("--sites", type=int, default=100)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", default="bench/results/forecast_analytics.json")
    raise SystemExit(run(p.parse_args()))
