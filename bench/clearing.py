"""Clearing benchmark: seeded random books, orders per second, written to JSON.

Measured in one run on the same books: the engine (uniform, pay-as-bid, 3-zone network),
the practical floor (``numpy.sort`` of the prices; ``argsort`` for reference), the HiGHS LP
of the raw orders (one variable per order), and pymarket (PyPI) where it can run.

pymarket 0.7.6 needs pandas < 3 and matplotlib, which the project does not carry; it runs in its
own interpreter given by ``--pymarket-python`` (or ``$GRIDSWARM_PYMARKET_PYTHON``), see
``docs/clearing.md``. Times are the best of ``--repeat`` runs; tests never assert them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy
from scipy.optimize import linprog
from scipy.sparse import csc_matrix

from bench import info as benchinfo
from coordinator.market.clearing import Book, Link, Network, clear_book

DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000)
DEFAULT_OUT = Path("bench/results/clearing.json")
ZONES = ("north", "centre", "south")


def make_book(n: int, seed: int, zones: int = 1, wide: bool = False) -> Book:
    """A seeded random book shaped like a retail energy interval.

    Quantities 1..10,000 Wh; prices in token base units per Wh (6-decimal token: ~250 = 0.25
    per kWh): bids ~ N(260, 60), offers ~ N(240, 60), clipped to 1..2000 -- or, with ``wide``,
    uniform over the whole uint24 range. Ids ascend with posting order, as chain ids do.
    """
    rng = np.random.default_rng(seed)
    is_bid = rng.random(n) < 0.5
    qty = rng.integers(1, 10_001, n)
    if wide:
        price = rng.integers(0, 2**24, n)
    else:
        mean = np.where(is_bid, 260.0, 240.0)
        zone_shift = np.zeros(n)
        zone = rng.integers(0, zones, n) if zones > 1 else None
        if zone is not None:  # cheap supply in the first zone, keen demand in the last
            zone_shift = np.where((zone == 0) & ~is_bid, -30.0, 0.0) + np.where(
                (zone == zones - 1) & is_bid, 30.0, 0.0
            )
        price = np.clip(np.rint(rng.normal(mean + zone_shift, 60.0)), 1, 2000).astype(np.int64)
    ids = np.cumsum(rng.integers(1, 4, n))
    seq = np.arange(n, dtype=np.int64)
    if zones > 1 and not wide:
        return Book.from_arrays(ids, is_bid, qty, price, seq, zone, ZONES[:zones])
    return Book.from_arrays(ids, is_bid, qty, price, seq)


def make_network(n: int, zones: int = 3) -> Network:
    """Every ordered zone pair linked, fee 5, limit 200 Wh per order in the book (binds)."""
    names = ZONES[:zones]
    links = [Link(a, b, fee=5, limit_wh=200 * n) for a in names for b in names if a != b]
    return Network(names, tuple(links))


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def raw_lp(book: Book, network: Network | None) -> float:
    """Welfare from the LP of the raw orders (one column per order) solved by HiGHS."""
    n = len(book)
    zone = np.zeros(n, dtype=np.int64) if book.zone is None or network is None else book.zone
    k = 1 if network is None else len(network.zones)
    links = [] if network is None else list(network.links)
    idx = {z: i for i, z in enumerate(network.zones)} if network else {}
    sign = np.where(book.is_bid, -1.0, 1.0)
    rows = np.concatenate([zone, [r for lk in links for r in (idx[lk.from_zone], idx[lk.to_zone])]])
    cols = np.concatenate([np.arange(n), np.repeat(np.arange(n, n + len(links)), 2)])
    vals = np.concatenate([sign, np.tile([-1.0, 1.0], len(links))])
    a_eq = csc_matrix((vals, (rows, cols)), shape=(k, n + len(links)))
    cost = np.concatenate([sign * book.price, [lk.fee for lk in links]])
    ub = np.concatenate([book.qty_wh, [lk.limit_wh for lk in links]]).astype(float)
    bounds = np.c_[np.zeros(n + len(links)), ub]
    res = linprog(cost, A_eq=a_eq, b_eq=np.zeros(k), bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(res.message)
    return float(-res.fun)


_PYMARKET_SCRIPT = r"""
import json, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
import pymarket as pm
d = np.load(sys.argv[1])
mar = pm.Market()
for user, (q, p, b) in enumerate(zip(d["qty"].tolist(), d["price"].tolist(), d["is_bid"].tolist())):
    mar.accept_bid(float(q), p, user, bool(b))
t0 = time.perf_counter()
trans, extra = mar.run("huang")
dt = time.perf_counter() - t0
df = trans.get_df()
print(json.dumps({"seconds": dt, "transactions": int(len(df)),
                  "volume_wh": float(df.quantity.sum()) / 2 if len(df) else 0.0,
                  "version": getattr(pm, "__version__", "unknown")}))
"""


def run_pymarket(python: str, book: Book, seed: int) -> dict[str, Any]:
    """Time pymarket's Huang double auction on ``book`` in the interpreter ``python``."""
    rng = np.random.default_rng(seed)
    # pymarket merges equal prices and then, on 10k-order books with integer prices, returns no
    # trades; a seeded perturbation below half a unit keeps the book's price order.
    price = book.price + rng.random(len(book)) * 0.49
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "book.npz"
        np.savez(path, qty=book.qty_wh, price=price, is_bid=book.is_bid)
        out = subprocess.run(
            [python, "-c", _PYMARKET_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def machine() -> dict[str, Any]:
    import highspy  # noqa: PLC0415

    return benchinfo.machine(
        numpy=np.__version__, scipy=scipy.__version__, highspy=str(getattr(highspy, "__version__", "unknown"))
    )


def _time_engine(book: Book, zbook: Book, net: Network, wide: Book, reps: int) -> dict[str, Any]:
    def revalidated() -> Book:
        return Book.from_arrays(book.ids, book.is_bid, book.qty_wh, book.price, book.seq)

    row: dict[str, Any] = {"orders": len(book)}
    row["sort_s"] = best_of(lambda: np.sort(book.price), reps)
    row["argsort_s"] = best_of(lambda: np.argsort(book.price), reps)
    row["validate_and_uniform_s"] = best_of(lambda: clear_book(revalidated()), reps)
    row["uniform_s"] = best_of(lambda: clear_book(book, "uniform"), reps)
    row["pay_as_bid_s"] = best_of(lambda: clear_book(book, "pay-as-bid"), reps)
    row["uniform_wide_prices_s"] = best_of(lambda: clear_book(wide, "uniform"), reps)
    row["network_3_zones_s"] = best_of(lambda: clear_book(zbook, "uniform", net), max(1, min(reps, 5)))
    return row


def run(
    sizes: Sequence[int],
    seed: int,
    repeat: int,
    pymarket_python: str | None,
    pymarket_max: int,
    lp_max: int,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    rows = []
    notes = []
    load_start = os.getloadavg()
    for n in sizes:
        reps = max(1, repeat)
        book, zbook, net = make_book(n, seed), make_book(n, seed, zones=3), make_network(n)
        row = _time_engine(book, zbook, net, make_book(n, seed, wide=True), reps)
        for key in ("uniform", "pay_as_bid", "network_3_zones"):
            row[f"{key}_orders_per_s"] = n / row[f"{key}_s"]
        row["uniform_over_sort"] = row["uniform_s"] / row["sort_s"]
        row["validate_and_uniform_over_sort"] = row["validate_and_uniform_s"] / row["sort_s"]
        r = clear_book(book)
        row["volume_wh"], row["price"] = r.volume_wh, r.price
        if n <= lp_max:
            t0 = time.perf_counter()
            lp = raw_lp(book, None)
            row["highs_raw_lp_s"] = time.perf_counter() - t0
            row["highs_raw_lp_welfare_matches"] = abs(lp - r.welfare) <= 1e-9 * max(1.0, abs(lp))
            t0 = time.perf_counter()
            lpn = raw_lp(zbook, net)
            row["highs_raw_lp_network_s"] = time.perf_counter() - t0
            rn = clear_book(zbook, "uniform", net)
            row["highs_raw_lp_network_welfare_matches"] = abs(lpn - rn.welfare) <= 1e-9 * max(1.0, abs(lpn))
        if pymarket_python and n <= pymarket_max:
            log(f"  pymarket on {n} orders ...")
            pmr = run_pymarket(pymarket_python, book, seed)
            row["pymarket"] = pmr
            if "seconds" in pmr:
                row["pymarket_s"] = pmr["seconds"]
                row["speedup_vs_pymarket"] = pmr["seconds"] / row["uniform_s"]
        rows.append(row)
        log(
            f"{n:>9} orders: uniform {row['uniform_s'] * 1e3:.2f} ms, sort {row['sort_s'] * 1e3:.2f} ms, "
            f"network {row['network_3_zones_s'] * 1e3:.1f} ms"
        )
    if not pymarket_python:
        notes.append("pymarket not measured: no --pymarket-python given (see docs/clearing.md)")
    return {
        "benchmark": "market clearing",
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python scripts/bench_clearing.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "load_average_1_5_15_min": {"start": list(load_start), "end": list(os.getloadavg())},
        "seed": seed,
        "repeat": repeat,
        "books": make_book.__doc__.strip().splitlines()[0] if make_book.__doc__ else "",
        "network": make_network.__doc__.strip() if make_network.__doc__ else "",
        "rows": rows,
        "notes": notes,
    }


def markdown_table(result: dict[str, Any]) -> str:
    lines = [
        "| orders | np.sort | uniform | uniform / sort | validate + uniform | pay-as-bid "
        "| 3-zone network | HiGHS raw LP | pymarket (Huang) | × vs pymarket |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ms(v: float | None) -> str:
        if v is None:
            return "–"
        return f"{v * 1e6:,.0f} µs" if v < 1e-3 else f"{v * 1e3:,.2f} ms"

    for r in result["rows"]:
        rate = f"{r['uniform_orders_per_s'] / 1e6:,.1f} M/s"
        ratio = r["uniform_over_sort"]
        lines.append(
            f"| {r['orders']:,} | {ms(r['sort_s'])} | {ms(r['uniform_s'])} ({rate}) | {ratio:.2f} "
            f"| {ms(r['validate_and_uniform_s'])} | {ms(r['pay_as_bid_s'])} | {ms(r['network_3_zones_s'])} "
            f"| {ms(r.get('highs_raw_lp_s'))} | {ms(r.get('pymarket_s'))} "
            f"| {'–' if 'speedup_vs_pymarket' not in r else format(r['speedup_vs_pymarket'], ',.0f')} |"
        )
    return "\n".join(lines)


def configure_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, DEFAULT_SIZES)),
        help="comma-separated book sizes (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=4, help="random seed (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=7, help="best of this many runs (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output (default: %(default)s)")
    parser.add_argument(
        "--pymarket-python",
        default=os.environ.get("GRIDSWARM_PYMARKET_PYTHON"),
        help="interpreter with pymarket installed (default: $GRIDSWARM_PYMARKET_PYTHON)",
    )
    parser.add_argument("--pymarket-max", type=int, default=10_000, help="largest book given to pymarket")
    parser.add_argument("--lp-max", type=int, default=100_000, help="largest book given to the raw HiGHS LP")
    parser.add_argument("--markdown", action="store_true", help="also print the table as markdown")


def run_bench(args: argparse.Namespace) -> int:
    try:
        sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    except ValueError:
        print(f"--sizes: expected comma-separated integers, got {args.sizes!r}", file=sys.stderr)
        return 2
    if not sizes or min(sizes) < 1:
        print("--sizes: give at least one positive size", file=sys.stderr)
        return 2
    result = run(
        sizes,
        args.seed,
        args.repeat,
        args.pymarket_python,
        args.pymarket_max,
        args.lp_max,
        log=lambda s: print(s, file=sys.stderr),
    )
    benchinfo.write_results(args.out, result)
    if args.markdown:
        print(markdown_table(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench_clearing", description=__doc__.splitlines()[0] if __doc__ else None
    )
    configure_bench(parser)
    return run_bench(parser.parse_args(argv))
