"""`gridswarm forecast SERIES.csv ...` (agent/forecast/cli.py)."""

import argparse
import json
from datetime import UTC, datetime

import numpy as np
import pytest
from forecast_synth import STEP, T0, WEEK, double_seasonal

from agent.forecast.cli import SeriesFormatError, configure_forecast, read_series, run_forecast


def run(argv, capsys):
    p = argparse.ArgumentParser()
    configure_forecast(p)
    rc = run_forecast(p.parse_args(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def write_ts(path, ts, vals, iso=True, header=True):
    lines = ["timestamp,value"] if header else []
    for t, v in zip(ts, vals, strict=True):
        stamp = datetime.fromtimestamp(t, UTC).isoformat() if iso else repr(float(t))
        lines.append(f"{stamp},{v}")
    path.write_text("\n".join(lines) + "\n")


def test_timestamped_series_prints_forecast_json(tmp_path, capsys):
    y = double_seasonal(2 * WEEK)
    p = tmp_path / "meter.csv"
    write_ts(p, T0 + STEP * np.arange(len(y)), y)
    rc, out, err = run([str(p), "--horizon", "6", "--model", "level_shift_weekly"], capsys)
    assert rc == 0, err
    d = json.loads(out)
    assert d["model"] == "level_shift_weekly" and d["horizon"] == 6
    assert d["start_ts"] == T0 + len(y) * STEP and d["step_s"] == STEP
    assert d["point"][0] == pytest.approx(y[-1] + y[-WEEK] - y[-1 - WEEK])
    for k in ("lower80", "upper80", "lower95", "upper95", "timestamps"):
        assert len(d[k]) == 6


def test_auto_is_the_default_model(tmp_path, capsys):
    p = tmp_path / "s.csv"
    p.write_text("\n".join(str(v) for v in double_seasonal(WEEK + 200)))
    rc, out, _ = run([str(p), "--horizon", "3", "--step", "1800"], capsys)
    assert rc == 0 and json.loads(out)["model"].startswith("auto:")


def test_read_series_handles_gaps_order_and_epoch_seconds(tmp_path):
    ts = T0 + 900 * np.arange(10)
    vals = np.arange(10.0)
    keep = [0, 1, 2, 5, 6, 9, 8, 7]  # gap at 3, 4; out of order at the end
    p = tmp_path / "g.csv"
    write_ts(p, ts[keep], vals[keep], iso=False, header=False)
    grid, t0, step = read_series(p)
    assert (t0, step) == (T0, 900.0)
    assert np.isnan(grid[3]) and np.isnan(grid[4])
    assert grid[9] == 9.0 and len(grid) == 10


def test_missing_values_in_the_csv_become_gaps(tmp_path, capsys):
    p = tmp_path / "nan.csv"
    vals = [str(v) for v in double_seasonal(100)]
    vals[50] = ""
    vals[60] = "NaN"
    p.write_text("value\n" + "\n".join(vals) + "\n")
    grid, _, _ = read_series(p, 1800.0)
    assert np.isnan(grid[50]) and np.isnan(grid[60])
    rc, out, _ = run([str(p), "--horizon", "2", "--step", "1800", "--model", "persistence"], capsys)
    assert rc == 0


@pytest.mark.parametrize("content, argv_extra, message", [
    ("1\n2\n3\n", [], "needs --step"),
    ("", ["--step", "60"], "empty"),
    ("timestamp,value\n0,1\n60,x\n", [], "not a number"),
    ("0,1\n60,2\n95,3\n", ["--step", "60"], "grid"),
    ("a,b,c\n1,2,3\n", ["--step", "60"], "columns"),
    ("nan\nnan\n", ["--step", "60"], "no usable value"),
])
def test_bad_input_is_a_clear_error_with_exit_2(tmp_path, capsys, content, argv_extra, message):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    rc, out, err = run([str(p), "--horizon", "2", *argv_extra], capsys)
    assert rc == 2 and out == ""
    assert err.startswith("error:") and message in err


def test_bad_arguments_are_clear_errors(tmp_path, capsys):
    p = tmp_path / "s.csv"
    p.write_text("1\n2\n3\n")
    assert run([str(p), "--horizon", "0", "--step", "60"], capsys)[0] == 2
    rc, _, err = run([str(p), "--horizon", "1", "--step", "60", "--model", "magic"], capsys)
    assert rc == 2 and "unknown model" in err
    rc, _, err = run([str(tmp_path / "nope.csv"), "--horizon", "1", "--step", "60"], capsys)
    assert rc == 2 and "cannot read" in err


def test_read_series_rejects_absurd_spans(tmp_path):
    p = tmp_path / "span.csv"
    p.write_text("0,1\n1,2\n1000000,3\n")
    with pytest.raises(SeriesFormatError, match="wrong --step"):
        read_series(p, 1.0)
