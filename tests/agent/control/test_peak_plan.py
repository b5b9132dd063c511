"""The peak threshold planned from the forecast and the flywheels' energy (agent/control/peak_plan.py)."""

import math

import pytest

from agent.control.peak_plan import PeakPlanner, StoreBudget, anchored, lowest_threshold

STEP = 900.0  # 15 min
FLY = StoreBudget(power_w=8_000.0, energy_wh=2_000.0, capacity_wh=2_000.0, efficiency=1.0, loss_per_h=0.0)


def shave_energy(x, T):
    return sum(max(0.0, v - T) for v in x) * STEP / 3600.0


def test_threshold_spends_exactly_the_stored_energy_on_the_peak():
    # a 1 h peak: 4 steps at 100 kW on a 90 kW base; 2 kWh spread over 1 h shaves 2 kW
    x = [90_000.0] * 8 + [100_000.0] * 4 + [90_000.0] * 8
    T = lowest_threshold(x, STEP, FLY)
    assert T == pytest.approx(98_000.0, abs=2.0)
    assert shave_energy(x, T) == pytest.approx(2_000.0, rel=1e-3)


def test_power_limits_the_threshold_on_a_short_spike():
    x = [50_000.0, 70_000.0, 50_000.0]  # one step 20 kW above; power 8 kW is the limit
    T = lowest_threshold(x, STEP, StoreBudget(8_000.0, 1e6, 1e6))
    assert T == pytest.approx(62_000.0, abs=2.0)


def test_recharge_between_two_peaks_counts_only_below_the_ceiling():
    # two 1 h peaks with a 2 h valley between them: recharging in the valley doubles what can
    # be shaved; with the ceiling below the valley there is no recharge
    x = [100_000.0] * 4 + [80_000.0] * 8 + [100_000.0] * 4
    free = lowest_threshold(x, STEP, FLY)
    blocked = lowest_threshold(x, STEP, FLY, charge_ceiling_w=70_000.0)
    assert free == pytest.approx(98_000.0, abs=2.0)  # recharged in the valley: each peak gets 2 kWh
    assert blocked == pytest.approx(99_000.0, abs=2.0)  # 2 kWh over both peaks


def test_standing_losses_and_an_empty_store_raise_the_threshold():
    x = [90_000.0] * 8 + [100_000.0] * 4
    lossy = lowest_threshold(x, STEP, StoreBudget(8_000.0, 2_000.0, 2_000.0, 1.0, 0.25), charge_ceiling_w=0.0)
    assert 98_000.0 < lossy < 100_000.0
    assert lowest_threshold(x, STEP, StoreBudget(8_000.0, 0.0, 2_000.0), charge_ceiling_w=0.0) == pytest.approx(
        100_000.0, abs=2.0)


def test_bad_forecasts_and_budgets_are_refused():
    with pytest.raises(ValueError, match="finite"):
        lowest_threshold([1.0, math.nan], STEP, FLY)
    with pytest.raises(ValueError, match="finite"):
        lowest_threshold([], STEP, FLY)
    with pytest.raises(ValueError, match="energy_wh"):
        StoreBudget(1.0, -1.0, 1.0)
    with pytest.raises(ValueError, match="efficiency"):
        StoreBudget(1.0, 1.0, 1.0, efficiency=0.0)


def test_anchoring_adds_the_last_error_decaying():
    assert anchored([10.0, 10.0, 10.0], 4.0, 0.5) == [12.0, 11.0, 10.5]
    assert anchored([1.0], -5.0, 1.0) == [0.0]  # never negative


def test_planner_ratchets_within_a_window_and_resets_at_the_next():
    pk = PeakPlanner(STEP, window_s=86400.0)
    assert pk.plan(0.0, FLY) is None  # nothing realised, no forecast: the site's spike rule
    pk.record(0.0, 95_000.0)
    no_fc = pk.plan(900.0, FLY)
    assert no_fc is not None and no_fc.shave_above_w == 95_000.0 and no_fc.planned_w is None
    x = [90_000.0] * 8 + [100_000.0] * 4
    plan = pk.plan(900.0, FLY, x, [v - 1_000.0 for v in x], error_w=1e-3)
    assert plan is not None and plan.planned_w == pytest.approx(98_000.0, abs=2.0)
    assert plan.shave_above_w == pytest.approx(98_000.0, abs=2.0)
    # the charge ceiling: the plan on the lower bound, never above the shave threshold
    assert 95_000.0 <= plan.charge_below_w <= plan.shave_above_w
    # never below the realised peak: a forecast of a small peak does not lower it
    low = pk.plan(1800.0, FLY, [50_000.0] * 12, [49_000.0] * 12, error_w=1e-3)
    assert low is not None and low.shave_above_w == 95_000.0 and low.charge_below_w == 95_000.0
    # a NaN in the forecast: the realised peak only
    nan = pk.plan(1800.0, FLY, [math.nan] * 12, None, error_w=math.nan)
    assert nan is not None and nan.shave_above_w == 95_000.0 and nan.planned_w is None
    # a new window starts from nothing
    assert pk.plan(86400.0 + 10.0, FLY) is None
    # the connection limit caps the threshold
    pk.limit_w = 90_000.0
    pk.record(86400.0 + 20.0, 95_000.0)
    assert pk.plan(86400.0 + 30.0, FLY).shave_above_w == 90_000.0


def test_planner_refuses_bad_settings():
    with pytest.raises(ValueError):
        PeakPlanner(0.0)
    with pytest.raises(ValueError, match="anchor_decay"):
        PeakPlanner(STEP, anchor_decay=1.5)


def test_a_forecast_that_misses_by_more_than_the_flywheel_can_shave_is_not_planned_on():
    pk = PeakPlanner(STEP, window_s=86400.0)
    pk.record(0.0, 95_000.0)
    x = [90_000.0] * 8 + [100_000.0] * 4
    assert pk.plan(900.0, FLY, x, x).planned_w is None  # no error measured yet: not trusted
    wide = [v - 6_000.0 for v in x]  # an 80 % lower bound that never reaches the realised peak
    for k in range(30):  # the last step's forecast missed by 5 kW, again and again
        plan = pk.plan(900.0 + k, FLY, x, wide, error_w=5_000.0)
    assert plan.planned_w is None and plan.shave_above_w == 95_000.0  # the realised peak alone
    assert pk.mean_abs_error_w == pytest.approx(5_000.0)
    for k in range(200):  # accurate again: planned on
        plan = pk.plan(1000.0 + k, FLY, x, x, error_w=100.0)
    assert plan.planned_w is not None


DAY = 96  # steps of 15 min


def _days(n, peak_w=100_000.0):
    # a 90 kW day with a 1 h peak at 100 kW in its middle
    one = [90_000.0] * 44 + [peak_w] * 4 + [90_000.0] * 48
    return one * n


def test_untrusted_threshold_is_raised_to_the_floor_learned_from_the_last_days():
    pk = PeakPlanner(STEP, window_s=30 * 86400.0)
    hist = _days(7)
    for k, v in enumerate(hist):
        pk.observe(k * STEP - len(hist) * STEP, v)
    full_day = lowest_threshold(_days(1), STEP, FLY)  # 98 kW: 2 kWh over the 1 h peak
    assert pk.learned_floor(FLY) == pytest.approx(full_day, abs=2.0)
    pk.start_window(0.0)
    pk.record(0.0, 60_000.0)  # the window's first step: a night's import
    plan = pk.plan(STEP, FLY)
    # no forecast: not the 60 kW realised (that would empty the flywheels on the morning ramp)
    assert plan is not None and plan.planned_w is None
    assert plan.shave_above_w == pytest.approx(full_day, abs=2.0)
    assert plan.charge_below_w == 60_000.0  # recharging stays below the realised peak
    # last round's policy, no floor
    bare = PeakPlanner(STEP, window_s=30 * 86400.0, prior_days=0)
    for k, v in enumerate(hist):
        bare.observe(k * STEP - len(hist) * STEP, v)
    bare.start_window(0.0)
    bare.record(0.0, 60_000.0)
    assert bare.plan(STEP, FLY).shave_above_w == 60_000.0


def test_the_floor_is_a_quantile_of_the_days_and_is_kept_for_the_window():
    pk = PeakPlanner(STEP, window_s=30 * 86400.0, prior_days=4, prior_quantile=0.5)
    hist = _days(2, 100_000.0) + _days(2, 104_000.0)  # two days need 98 kW, two 102 kW
    for k, v in enumerate(hist):
        pk.observe(k * STEP - len(hist) * STEP, v)
    assert pk.learned_floor(FLY) == pytest.approx(100_000.0, abs=2.0)  # the median
    pk.start_window(0.0)
    pk.record(0.0, 50_000.0)
    assert pk.plan(STEP, FLY).shave_above_w == pytest.approx(100_000.0, abs=2.0)
    for k in range(1, 2 * DAY):  # two quiet days in the window: the floor is not recomputed
        pk.observe(k * STEP, 50_000.0)
    assert pk.plan(2 * DAY * STEP, FLY).shave_above_w == pytest.approx(100_000.0, abs=2.0)
    # the next window recomputes it: the last 4 days now hold two quiet days (median 98 kW -> 74 kW)
    pk.start_window(30 * 86400.0)
    pk.record(30 * 86400.0, 50_000.0)
    assert pk.plan(30 * 86400.0 + STEP, FLY).shave_above_w < 99_000.0


def test_bad_or_missing_history_gives_no_floor():
    pk = PeakPlanner(STEP)
    assert pk.learned_floor(FLY) == 0.0  # no whole day of history
    for k in range(DAY - 1):
        pk.observe(k * STEP, 100_000.0)
    assert pk.learned_floor(FLY) == 0.0  # still not a whole day
    pk.observe(DAY * STEP, math.nan)  # dropped
    pk.observe(DAY * STEP, 1e12)  # absurd: dropped
    pk.observe(-5.0, 1e3)  # earlier than the last step: dropped
    assert len(pk._history) == DAY - 1
    pk.observe(3 * DAY * STEP, 100_000.0)  # a gap of two days restarts the history
    assert len(pk._history) == 1 and pk.learned_floor(FLY) == 0.0
    pk.record(3 * DAY * STEP, 80_000.0)
    plan = pk.plan(3 * DAY * STEP + STEP, FLY)
    assert plan.shave_above_w == 80_000.0  # the realised peak alone
    with pytest.raises(ValueError, match="prior"):
        PeakPlanner(STEP, prior_quantile=1.5)


def test_an_untrusted_forecast_still_bounds_the_threshold_from_below():
    pk = PeakPlanner(STEP, window_s=86400.0, prior_days=0)
    pk.record(0.0, 60_000.0)  # the window's first step: a night's import
    for k in range(30):  # a forecast that misses by 5 kW: not trusted
        pk.plan(STEP, FLY, [60_000.0] * 4, None, error_w=5_000.0)
    point = [80_000.0] * 4 + [90_000.0] * 8 + [100_000.0] * 4 + [90_000.0] * 8
    lower = [v - 2_000.0 for v in point]  # its 1 h peak at 98 kW even at the lower bound
    plan = pk.plan(STEP, FLY, point, lower, error_w=5_000.0)
    assert plan.planned_w is None  # not planned on the point forecast
    # 2 kWh over the lower bound's 1 h peak: 96 kW, not the 60 kW realised (which would empty
    # the flywheels on the ramp to a peak still to come)
    assert plan.shave_above_w == pytest.approx(96_000.0, abs=2.0)
    assert plan.lower_w == pytest.approx(96_000.0, abs=2.0)
    assert plan.charge_below_w == 60_000.0  # recharging stays below the realised peak
    # half the energy left: the bound rises to what 1 kWh holds
    half = StoreBudget(8_000.0, 1_000.0, 2_000.0, 1.0, 0.0)
    assert pk.plan(STEP, half, point, lower, error_w=5_000.0).shave_above_w == pytest.approx(97_000.0, abs=2.0)
    # no lower bound, a NaN in it, or one of the wrong length: the realised peak alone
    for lo in (None, [math.nan] + lower[1:], lower[:5]):
        p = pk.plan(STEP, FLY, point, lo, error_w=5_000.0)
        assert p.shave_above_w == 60_000.0 and p.lower_w is None
    # a lower bound below the realised peak does not lower it
    assert pk.plan(STEP, FLY, point, [50_000.0] * len(point), error_w=5_000.0).shave_above_w == 60_000.0
    # the connection limit still caps it
    pk.limit_w = 90_000.0
    assert pk.plan(STEP, FLY, point, lower, error_w=5_000.0).shave_above_w == 90_000.0
