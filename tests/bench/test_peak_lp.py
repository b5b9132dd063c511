"""The peak-shaving LP (HiGHS): a hand-checkable optimum, the standing losses, the floor."""

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
