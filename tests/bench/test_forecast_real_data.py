"""The forecast benchmark's evaluation (bench/forecast.py) on real data that ships in packages
(skipped when the package is absent)."""

import argparse
import json

import numpy as np
import pytest

pytest.importorskip("pmdarima")

from agent.forecast.datasets import load_taylor  # noqa: E402
from bench.forecast import configure_bench, rolling_eval, run_bench  # noqa: E402


@pytest.fixture(scope="module")
def taylor():
    return load_taylor()


def test_taylor_reference_figures_are_reproduced(taylor):
    """Figures measured independently of this code: persistence 2.27 %, weekly level shift 0.41 %."""
    y, ts0, step = taylor
    n_fit = 8 * 336
    r = rolling_eval("level_shift_weekly", y, ts0, step, n_fit, 4032 - n_fit, (1, 6), 6)
    assert r["horizons"]["1"]["mape"] == pytest.approx(0.41, abs=0.01)
    assert r["horizons"]["6"]["mape"] == pytest.approx(0.99, abs=0.01)
    p = rolling_eval("persistence", y, ts0, step, n_fit, 4032 - n_fit, (1,), 1)
    assert p["horizons"]["1"]["mape"] == pytest.approx(2.27, abs=0.01)


def test_dshw_on_taylor_is_accurate_and_calibrated(taylor):
    y, ts0, step = taylor
    n_fit = 8 * 336
    r = rolling_eval("dshw", y, ts0, step, n_fit, 4032 - n_fit, (1,), 48)
    assert r["horizons"]["1"]["mape"] < 0.41  # the target from the issue
    assert abs(r["coverage_all"]["80"] - 0.80) <= 0.03
    assert abs(r["coverage_all"]["95"] - 0.95) <= 0.03


def test_metrics_on_a_ramp_match_a_hand_computation():
    y = 100.0 + np.arange(200.0)
    r = rolling_eval("persistence", y, 0.0, 1800.0, 150, 40, (1, 3), 3,
                     seasonal_periods=[48])
    # persistence on a unit ramp is off by exactly h
    want = np.mean(3.0 / y[152:192])  # origins 150..189, all targets inside the series
    assert r["horizons"]["3"]["mae"] == pytest.approx(3.0)
    assert r["horizons"]["3"]["mape"] == pytest.approx(100 * want)
    assert r["horizons"]["3"]["n"] == 40


def test_bench_command_writes_json(tmp_path, capsys):
    p = argparse.ArgumentParser()
    configure_bench(p)
    out = tmp_path / "forecast.json"
    args = p.parse_args(["--out", str(out), "--sections", "taylor", "--models",
                         "persistence,seasonal_naive_weekly", "--quiet"])
    assert run_bench(args) == 0
    d = json.loads(out.read_text())
    res = d["sections"]["taylor"]["results"]
    assert set(res) == {"persistence", "seasonal_naive_weekly"}
    assert res["seasonal_naive_weekly"]["horizons"]["1"]["mape"] == pytest.approx(2.15, abs=0.01)
    assert res["persistence"]["predict96_us_median"] > 0
    assert "| persistence |" in capsys.readouterr().out


def test_bench_rejects_unknown_models(tmp_path, capsys):
    p = argparse.ArgumentParser()
    configure_bench(p)
    args = p.parse_args(["--out", str(tmp_path / "x.json"), "--models", "oracle", "--quiet"])
    assert run_bench(args) == 2
    assert "unknown model" in capsys.readouterr().err
