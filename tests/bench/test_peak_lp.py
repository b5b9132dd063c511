"""The peak-shaving LP (HiGHS): a hand-checkable optimum, the standing losses, the floor."""

import math

import pytest

from bench.peak_lp import plan_peak_lp


def test_flat_profile_with_one_peak_is_shaved_by_the_stored_energy():
    x = [10.0] * 4 + [20.0] * 2 + [10.0] * 4  # 1 h steps, a 2 h peak of +10 W
    plan = plan_peak_lp(x, 3600.0, power_w=100.0, e_min_wh=0.0, e_max_wh=10.0, e0_wh=10.0, efficiency=1.0)
    assert plan is not None and plan.peak_w == pytest.approx(15.0, abs=1e-6)  # 10 Wh spread over 2 h


def test_charging_between_peaks_counts_and_never_exceeds_the_peak():
    x = [20.0, 12.0, 20.0]
    plan = plan_peak_lp(x, 3600.0, power_w=100.0, e_min_wh=0.0, e_max_wh=5.0, e0_wh=5.0, efficiency=1.0)
    # e after the first peak p - 15, plus p - 12 recharged in the valley, covers 20 - p: p = 47 / 3
    assert plan.peak_w == pytest.approx(47.0 / 3.0, abs=1e-6)
    lossy = plan_peak_lp(x, 3600.0, power_w=100.0, e_min_wh=0.0, e_max_wh=5.0, e0_wh=5.0, efficiency=1.0,
                         loss_per_h=0.5)
    assert lossy.peak_w > plan.peak_w  # standing losses cost shaving


def test_floor_and_bad_input():
    plan = plan_peak_lp([10.0, 20.0], 3600.0, power_w=100.0, e_min_wh=0.0, e_max_wh=100.0, e0_wh=100.0, floor_w=18.0)
    assert plan.peak_w == pytest.approx(18.0)  # nothing is gained below a peak already realised
    assert plan_peak_lp([float("nan")], 60.0, power_w=1.0, e_min_wh=0.0, e_max_wh=1.0, e0_wh=0.0) is None
    assert plan_peak_lp([], 60.0, power_w=1.0, e_min_wh=0.0, e_max_wh=1.0, e0_wh=0.0) is None


def test_soc_window_holds_before_the_steps_standing_losses_as_on_the_device():
    # a full store (10 Wh, 50 %/h losses) meets a 30 W peak in the second 1 h step: it cannot be
    # charged above full in the first step, loses half of it there, and has 5 Wh left for the peak.
    # Bounding the energy after the losses let the plan hold 20 Wh before them (peak 20 W),
    # which no device reaches.
    plan = plan_peak_lp([0.0, 30.0], 3600.0, power_w=100.0, e_min_wh=0.0, e_max_wh=10.0, e0_wh=10.0, efficiency=1.0,
                        loss_per_h=0.5)
    assert plan is not None and plan.peak_w == pytest.approx(25.0, abs=1e-6)


def test_the_device_model_executing_the_plan_reaches_its_peak():
    from agent.devices.storage import StoreModel

    x = [50.0, 40.0, 90.0, 60.0, 95.0, 45.0]
    kw = dict(power_w=30.0, e_min_wh=1.0, e_max_wh=19.0, e0_wh=15.0, efficiency=0.95, loss_per_h=0.25)
    plan = plan_peak_lp(x, 1800.0, **kw)
    assert plan is not None
    # replay the first step on the device model: the energy the plan expects is the device's
    m = StoreModel(capacity_wh=20.0, max_charge_w=30.0, max_discharge_w=30.0, charge_efficiency=0.95,
                   discharge_efficiency=0.95, loss_per_s=-math.log(0.75) / 3600.0, soc=0.75,
                   soc_min=0.05, soc_max=0.95)
    m.step(plan.discharge_first_w - plan.charge_first_w, 1800.0)
    assert m.energy_wh == pytest.approx(plan.energy_after_first_wh, rel=1e-6, abs=1e-6)


def test_the_limits_section_scores_a_known_threshold_and_foresight():
    # a flat day with one two-step excursion per day: knowing the window's hindsight threshold,
    # or the next steps, reaches the optimum; a threshold set too low empties the flywheel
    # before the top, one set too high leaves shaving undone
    np = pytest.importorskip("numpy")
    from bench.site_control import bench_limits

    day = [60.0] * 96
    day[50], day[51] = 90.0, 100.0
    y = np.tile(day, 9)
    r = bench_limits({"desc": "synthetic", "y": y, "step_s": 900.0, "window": 96}, windows=2,
                     shifts_w=(-3000.0, 0.0, 3000.0), foresight_steps=(1, 2))
    assert r["windows"] == 2
    h = r["share_of_optimum_pct_given_hindsight_threshold_shifted_by"]
    assert h["+0 W"] >= 97.0
    assert h["-3000 W"] < h["+0 W"] and h["+3000 W"] < h["+0 W"]
    f = r["share_of_optimum_pct_given_foresight_of"]
    assert f["+1 steps (15 min)"] >= 97.0 > f["+0 steps (0 min)"]  # shaving all it can now empties it early
    assert r["causal_estimate_mean_abs_error_w"]["window_before"] == 0  # every day is the same
