"""The Forecaster interface and every bad-input rule in agent/forecast/base.py's table."""

import json
import logging

import numpy as np
import pytest
from forecast_synth import DAY, STEP, T0, WEEK, double_seasonal

from agent.forecast import (
    Forecast,
    Forecaster,
    ForecastInputError,
    InsufficientHistoryError,
    UnknownModelError,
    make_forecaster,
)
from gridswarm.clock import ManualClock


def fc_ok(fc: Forecast, horizon: int) -> None:
    assert fc.horizon == horizon
    for arr in (fc.point, fc.lower80, fc.upper80, fc.lower95, fc.upper95):
        assert arr.shape == (horizon,) and np.all(np.isfinite(arr))
    assert np.all(fc.lower95 <= fc.lower80 + 1e-9)
    assert np.all(fc.lower80 <= fc.point + 1e-9)
    assert np.all(fc.point <= fc.upper80 + 1e-9)
    assert np.all(fc.upper80 <= fc.upper95 + 1e-9)


@pytest.mark.parametrize("name", ["persistence", "seasonal_naive_daily", "seasonal_naive_weekly",
                                  "level_shift_daily", "level_shift_weekly", "dshw", "lstm", "auto"])
def test_every_model_forecasts_with_ordered_intervals(name, series):
    f = make_forecaster(name, step_s=STEP, background=False)
    assert isinstance(f, Forecaster)
    f.fit(series[:-10], T0)
    for v in series[-10:]:
        f.update([v])
    fc = f.predict(96)
    fc_ok(fc, 96)
    assert fc.fallback is None
    assert fc.model.endswith(name) or fc.model.startswith("auto:")
    assert fc.step_s == STEP
    assert fc.start_ts == T0 + len(series) * STEP
    assert fc.timestamps()[1] - fc.timestamps()[0] == STEP
    json.dumps(fc.to_dict())


def test_unknown_model_is_a_clear_error():
    with pytest.raises(UnknownModelError, match="unknown model"):
        make_forecaster("prophet", step_s=STEP)


def test_weekly_model_without_a_weekly_period_is_a_clear_error():
    with pytest.raises(UnknownModelError, match="weekly"):
        make_forecaster("dshw", step_s=STEP, seasonal_periods=[48])


def test_step_that_does_not_divide_a_day_needs_periods():
    with pytest.raises(ForecastInputError, match="seasonal_periods"):
        make_forecaster("seasonal_naive_daily", step_s=7 * 60 + 1)
    f = make_forecaster("persistence", step_s=421)  # persistence needs no season
    f.fit([1.0, 2.0], 0.0)
    assert f.predict(2).point.tolist() == [2.0, 2.0]


def test_nan_and_gaps_are_imputed_and_logged(series, caplog):
    y = series.copy()
    y[100:103] = np.nan  # short gap: interpolated
    y[500:560] = np.nan  # long gap: seasonal
    y[700] = np.inf
    f = make_forecaster("level_shift_weekly", step_s=STEP, background=False)
    with caplog.at_level(logging.WARNING):
        f.fit(y, T0)
    assert "missing/non-finite" in caplog.text
    h = f.history
    assert np.all(np.isfinite(h))
    assert h[101] == pytest.approx((y[99] + y[103]) / 2)
    assert h[500 + 5] == pytest.approx(y[500 + 5 - WEEK])
    f.update([np.nan, series[-1]])
    fc_ok(f.predict(48), 48)


def test_leading_nans_are_dropped_and_time_shifted(series):
    y = np.concatenate([[np.nan] * 3, series])
    f = make_forecaster("persistence", step_s=STEP).fit(y, T0)
    assert f.n_obs == len(series)
    assert f.last_ts == T0 + (len(y) - 1) * STEP


def test_negative_demand_is_a_bad_reading_and_forecasts_stay_nonnegative(series, caplog):
    y = series.copy()
    y[50] = -500.0
    f = make_forecaster("seasonal_naive_daily", step_s=STEP, background=False)
    with caplog.at_level(logging.WARNING):
        f.fit(y, T0)
    assert "negative" in caplog.text
    assert f.history.min() > 0
    f.update([-1.0])
    assert f.history[-1] >= 0
    g = make_forecaster("persistence", step_s=STEP, nonnegative=False).fit([-5.0, -3.0], 0)
    assert g.predict(1).point[0] == -3.0  # net load may be negative when allowed


def test_nonnegative_clips_forecasts():
    f = make_forecaster("level_shift_daily", step_s=STEP, background=False)
    y = np.tile(np.r_[np.zeros(24), np.full(24, 10.0)], 3)
    y[-1] = 0.5  # a big downward level shift would push the forecast below zero
    f.fit(y, T0)
    fc = f.predict(48)
    assert fc.point.min() >= 0 and fc.lower95.min() >= 0


def test_constant_series_falls_back_to_persistence_then_recovers(caplog):
    f = make_forecaster("dshw", step_s=STEP, background=False)
    with caplog.at_level(logging.WARNING):
        f.fit(np.full(3 * WEEK, 42.0), T0)
    fc = f.predict(10)
    assert fc.fallback == "constant series"
    assert fc.point.tolist() == [42.0] * 10
    assert "persistence" in fc.model and "constant series" in caplog.text
    f.update(double_seasonal(WEEK, seed=4))  # the series starts moving
    fc = f.predict(10)
    assert fc.fallback is None and fc.model == "dshw"


def test_too_little_history_uses_the_longest_season_that_fits():
    f = make_forecaster("dshw", step_s=STEP, background=False)
    y = double_seasonal(2 * DAY)
    f.fit(y, T0)
    fc = f.predict(DAY)
    assert fc.fallback.startswith("too little history")
    assert fc.model.startswith("seasonal_naive_48")
    np.testing.assert_allclose(fc.point, y[-DAY:])
    # persistence when not even a day
    g = make_forecaster("level_shift_weekly", step_s=STEP, background=False).fit(y[:10], T0)
    assert g.predict(3).model.startswith("persistence")


def test_history_growing_past_the_minimum_fits_the_model():
    f = make_forecaster("level_shift_weekly", step_s=STEP, background=False)
    y = double_seasonal(WEEK + 20)
    f.fit(y[:WEEK - 5], T0)
    assert f.predict(1).fallback is not None
    for v in y[WEEK - 5:]:
        f.update([v])
    fc = f.predict(1)
    assert fc.fallback is None
    assert fc.point[0] == pytest.approx(y[-1] + y[-WEEK] - y[-1 - WEEK])


def test_nothing_usable_is_a_clear_error():
    f = make_forecaster("persistence", step_s=STEP)
    with pytest.raises(InsufficientHistoryError):
        f.fit([np.nan, np.nan], T0)
    with pytest.raises(InsufficientHistoryError):
        f.fit([], T0)
    with pytest.raises(InsufficientHistoryError):
        f.predict(3)  # never fitted


def test_wrong_shapes_and_horizons_are_clear_errors(series):
    f = make_forecaster("persistence", step_s=STEP).fit(series, T0)
    with pytest.raises(ForecastInputError):
        f.update(np.ones((2, 2)))
    with pytest.raises(ForecastInputError):
        f.update(["a lot"])
    for bad in (0, -1, 2.5):
        with pytest.raises(ForecastInputError):
            f.predict(bad)
    with pytest.raises(ForecastInputError):
        make_forecaster("persistence", step_s=0)


def test_clock_jump_forward_within_limit_is_imputed(series, caplog):
    f = make_forecaster("seasonal_naive_daily", step_s=STEP, background=False).fit(series, T0)
    n = f.n_obs
    with caplog.at_level(logging.WARNING):
        f.update([series[-DAY + 3]], ts=f.last_ts + 4 * STEP)  # 3 steps missing
    assert "gap of 3 step" in caplog.text
    assert f.n_obs == n + 4
    assert np.all(np.isfinite(f.history))


def test_clock_jump_beyond_limit_restarts_history(series, caplog):
    f = make_forecaster("level_shift_weekly", step_s=STEP, background=False).fit(series, T0)
    jump_ts = f.last_ts + 3 * WEEK * STEP
    with caplog.at_level(logging.WARNING):
        f.update(series[:10], ts=jump_ts)
    assert "restarting history" in caplog.text
    assert f.n_obs == 10 and f.last_ts == jump_ts + 9 * STEP
    fc = f.predict(4)
    assert fc.fallback.startswith("too little history")
    fc_ok(fc, 4)


def test_clock_going_back_drops_overlap(series, caplog):
    f = make_forecaster("persistence", step_s=STEP).fit(series, T0)
    n, last = f.n_obs, f.last_ts
    with caplog.at_level(logging.WARNING):
        f.update([1.0, 2.0, 3.0], ts=last - STEP)  # 1st and 2nd overlap the history
    assert "clock went back" in caplog.text
    assert f.n_obs == n + 1 and f.history[-1] == 3.0


def test_stale_data_forecasts_from_now(series, caplog):
    clock = ManualClock(T0 + len(series) * STEP)
    f = make_forecaster("seasonal_naive_daily", step_s=STEP, clock=clock).fit(series, T0)
    assert f.predict(4).fallback is None
    clock.advance(5 * STEP)
    with caplog.at_level(logging.WARNING):
        fc = f.predict(4)
    assert "stale" in fc.fallback and "no data for 5 step" in caplog.text
    assert fc.start_ts == f.last_ts + 6 * STEP
    # the seasonal naive forecast for those steps: skipped 5, then the next 4
    np.testing.assert_allclose(fc.point, series[-DAY + 5:-DAY + 9])


def test_internal_model_failure_falls_back_to_persistence(series, caplog):
    f = make_forecaster("dshw", step_s=STEP, background=False).fit(series, T0)

    def boom(y, h):
        raise RuntimeError("numerical trouble")

    f._active.point = boom
    with caplog.at_level(logging.ERROR):
        fc = f.predict(5)
    assert "numerical trouble" in fc.fallback and "predict failed" in caplog.text
    assert fc.point.tolist() == [series[-1]] * 5
    f.update([series[-1]])  # the calibration forecast inside update fails the same way
    fc_ok(f.predict(5), 5)


def test_background_refit_swaps_in_a_new_engine(series):
    f = make_forecaster("dshw", step_s=STEP, background=True,
                        engine_kw={"refit_every": DAY})
    f.fit(series[:3 * WEEK], T0)
    first = f.engine
    for v in series[3 * WEEK:3 * WEEK + DAY + 5]:
        f.update([v])
    f.wait_refit(timeout=60)
    assert f.engine is not first
    assert f.engine._t == f.n_obs  # caught up with what arrived during the refit
    fc_ok(f.predict(96), 96)


def test_intervals_cover_on_a_synthetic_series():
    y = double_seasonal(6 * WEEK, seed=7)
    n = 4 * WEEK
    f = make_forecaster("level_shift_weekly", step_s=STEP, background=False).fit(y[:n], T0)
    hits80 = hits95 = 0
    for o in range(n, len(y)):
        fc = f.predict(1)
        hits80 += fc.lower80[0] <= y[o] <= fc.upper80[0]
        hits95 += fc.lower95[0] <= y[o] <= fc.upper95[0]
        f.update([y[o]])
    m = len(y) - n
    assert abs(hits80 / m - 0.80) < 0.06
    assert abs(hits95 / m - 0.95) < 0.04


def test_update_before_any_usable_value_logs_and_waits(caplog):
    f = make_forecaster("persistence", step_s=STEP)
    with caplog.at_level(logging.WARNING):
        f.update([np.nan])
    assert "update before any usable value" in caplog.text
    f.update([3.0])
    assert f.predict(1).point[0] == 3.0


@pytest.mark.parametrize("name", ["dshw", "lstm"])
def test_background_fit_after_fallback_primes_intervals_despite_new_data(name, caplog):
    y = double_seasonal(5 * WEEK, seed=8)
    f = make_forecaster(name, step_s=STEP, background=True)
    f.fit(y[:WEEK], T0)  # too little history: fallback
    assert f.predict(1).fallback is not None
    need = f.engine.min_history()
    for v in y[WEEK:need + 1]:
        f.update([v])  # schedules the first real fit in the worker
    for v in y[need + 1:need + 30]:
        f.update([v])  # data keeps arriving while it runs (or after)
    with caplog.at_level(logging.ERROR):
        f.wait_refit(timeout=120)
    assert "failed" not in caplog.text
    fc = f.predict(48)
    assert fc.fallback is None and fc.model == name
    assert f.calibrator.counts()[0] > 100  # primed by the backtest, not only online scores
    fc_ok(fc, 48)
