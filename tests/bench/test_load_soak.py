"""The load and soak benchmarks' machinery: a short pass of ``gridswarm bench load`` on Anvil
(a few sites through the coordinator and the chain: nothing dropped), and the soak's growth
figure on known series. The long runs are benchmarks (bench/results/load.json, soak.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from app.devnet import ANVIL
from bench.load import pct
from bench.soak import DAY, longest_life, per_day, rss_by_age


def _samples(values: list[float], pids: list[int] | None = None) -> list[dict]:
    pids = pids or [1] * len(values)
    return [{"sim": 1_782_054_000.0 + i * DAY / 10, "v": v, "pid": p} for i, (v, p) in enumerate(zip(values, pids, strict=True))]


def test_growth_per_day_is_the_slope_over_the_last_life() -> None:
    flat = per_day(_samples([100.0] * 10), lambda s: s["v"])
    assert flat is not None and abs(flat) < 1e-6
    growing = per_day(_samples([100.0 + 5 * i for i in range(10)]), lambda s: s["v"])
    assert growing == pytest.approx(50.0)  # 5 per tenth of a day
    # a restart (new pid) starts a new life: the fall at the restart is not "negative growth"
    restarted = _samples([100.0, 110.0, 120.0, 10.0, 20.0, 30.0, 40.0], [1, 1, 1, 2, 2, 2, 2])
    assert per_day(restarted, lambda s: s["v"], lambda s: s["pid"]) == pytest.approx(100.0)
    assert per_day(_samples([1.0, 2.0]), lambda s: s["v"]) is None  # too few points to say


def test_percentile() -> None:
    assert pct([], 0.99) is None
    assert pct([float(i) for i in range(1, 101)], 0.99) == 99.0
    assert pct([3.0, 1.0, 2.0], 0.5) == 2.0


@pytest.mark.skipif(not ANVIL.exists(), reason="anvil not installed (npm @foundry-rs/anvil-linux-amd64)")
def test_bench_load_short_pass_drops_nothing(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    code = main(["bench", "load", "--sites", "6", "--chains", "anvil", "--generators", "2", "--speed", "120",
                 "--connect-s", "6", "--timeout-s", "120", "--out", str(out)])  # fmt: skip
    doc = json.loads(out.read_text())
    (row,) = doc["results"]
    assert code == 0, row
    assert row["client"].startswith("anvil")
    assert row["connected"] == row["orders_accepted"] == row["dispatch_received"] == row["readings_acked"] == 6
    assert row["orders_failed"] == row["errors"] == 0
    assert row["clearing"]["orders"] == 6 and row["settled_on_chain"]


def test_growth_leaves_out_the_warm_up() -> None:
    # RSS climbs while a process imports and fills its caches, then stays flat
    values = [50.0, 80.0, 100.0, 100.0, 100.0, 100.0, 100.0]
    samples = [{**s, "wall": 1000.0 + 10 * i} for i, s in enumerate(_samples(values))]
    assert per_day(samples, lambda s: s["v"]) > 10  # the warm-up reads as growth
    assert abs(per_day(samples, lambda s: s["v"], warmup_s=20.0)) < 1e-6


def _proc_samples(rss: list[float], pids: list[int]) -> list[dict]:
    return [{"sim": 1_782_054_000.0 + i * DAY / 8, "wall": float(i), "procs": {"a": {"pid": p, "rss_kb": r}}}
            for i, (r, p) in enumerate(zip(rss, pids, strict=True))]


def test_memory_is_judged_on_the_longest_life_and_by_age_over_every_life() -> None:
    # a long first life that levels off, then two short ones cut by kills
    rss = [100.0, 110.0, 115.0, 117.0, 118.0, 118.0, 118.0, 118.0, 100.0, 110.0, 100.0, 110.0]
    pids = [1] * 8 + [2, 2, 3, 3]
    samples = _proc_samples([r * 1024 for r in rss], pids)
    longest = longest_life(samples, "a", warmup_s=4.0)
    assert longest["sim_days"] == pytest.approx(7 / 8, abs=0.01)
    assert longest["first_last_mb"] == [100.0, 118.0]
    assert longest["growth_kb_per_sim_day"] == pytest.approx(0.0, abs=1e-6)  # flat after the warm-up
    by_age = rss_by_age(samples, "a", bucket_h=12.0)  # samples 3 h apart
    assert by_age == {"0-12": pytest.approx(110.0),  # ages 0-9 h: the long life's 4 and 2 of each short one
                      "12-24": pytest.approx(118.0)}  # only the long life gets this old: level
