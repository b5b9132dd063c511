import numpy as np
import pytest

from agent.forecast.conformal import ConformalCalibrator


def test_coverage_of_iid_residuals_is_nominal():
    rng = np.random.default_rng(0)
    cal = ConformalCalibrator(max_h=3, window=500)
    cal.add_backtest(np.zeros((500, 3)), rng.normal(0, 1, (500, 3)))
    fresh = rng.normal(0, 1, 20000)
    for level in (0.80, 0.95):
        lo, hi = cal.offsets(3, level)
        cover = np.mean((fresh >= lo[0]) & (fresh <= hi[0]))
        assert abs(cover - level) < 0.03


def test_skewed_residuals_give_asymmetric_bands():
    rng = np.random.default_rng(1)
    cal = ConformalCalibrator(max_h=1, window=1000)
    cal.add_backtest(np.zeros((1000, 1)), rng.exponential(1.0, (1000, 1)) - 0.3)
    lo, hi = cal.offsets(1, 0.95)
    assert hi[0] > 3 * abs(lo[0])


def test_online_scoring_matches_forecast_errors():
    cal = ConformalCalibrator(max_h=2, window=10, min_count=1)
    cal.add_forecast(0, np.array([10.0, 20.0]))
    cal.record_actual(1, 12.0)  # h=1 residual +2
    cal.record_actual(2, 15.0)  # h=2 residual -5
    assert cal.residuals(1).tolist() == [2.0]
    assert cal.residuals(2).tolist() == [-5.0]


def test_uncalibrated_horizons_grow_with_sqrt_h():
    cal = ConformalCalibrator(max_h=2, window=100)
    rng = np.random.default_rng(2)
    cal.add_backtest(np.zeros((100, 1)), rng.normal(0, 1, (100, 1)))  # only h=1 known
    lo, hi = cal.offsets(4, 0.8)
    assert hi[3] == pytest.approx(hi[0] * 2.0)
    assert lo[3] == pytest.approx(lo[0] * 2.0)


def test_no_residuals_uses_fallback_sigma_and_contains_zero():
    cal = ConformalCalibrator(max_h=4)
    cal.fallback_sigma = 2.0
    lo80, hi80 = cal.offsets(4, 0.8)
    lo95, hi95 = cal.offsets(4, 0.95)
    assert np.all(lo95 <= lo80) and np.all(lo80 <= 0) and np.all(hi80 <= hi95)
    assert hi95[0] == pytest.approx(1.96 * 2.0)


def test_window_keeps_only_recent_residuals():
    cal = ConformalCalibrator(max_h=1, window=5, min_count=1)
    cal.add_backtest(np.zeros((8, 1)), np.arange(8.0)[:, None])
    assert sorted(cal.residuals(1).tolist()) == [3, 4, 5, 6, 7]


def test_mean_abs_error_can_leave_out_the_newest_residuals():
    cal = ConformalCalibrator(max_h=2, window=8)
    e = np.arange(1.0, 11.0)  # 10 residuals into a ring of 8: 3..10 are kept
    cal.add_backtest(np.zeros((10, 2)), np.stack([e, 2 * e], axis=1))
    assert cal.mean_abs_error(1) == np.mean(np.arange(3.0, 11.0))
    assert cal.mean_abs_error(1, last=4) == np.mean([7.0, 8.0, 9.0, 10.0])
    assert cal.mean_abs_error(1, last=4, skip=4) == np.mean([3.0, 4.0, 5.0, 6.0])
    assert cal.mean_abs_error(2, last=2, skip=6) == np.mean([3.5, 7.0])  # horizons 1 and 2 averaged
    assert cal.mean_abs_error(1, last=4, skip=6) == np.mean([3.0, 4.0])  # only what is kept
    assert np.isnan(cal.mean_abs_error(1, skip=8))
