"""Flywheel policy: shared peaks, late pre-charge, readiness, an empty flywheel when a peak comes."""

import math
from dataclasses import replace

import pytest

from agent.control.arbiter import ArbiterInputs, Commands, ControlConfig, GridView, LoadView, StoreView, arbitrate
from agent.control.flywheel import plan_flywheels, sustainable_w
from agent.control.reserve import ReserveState

T = 2_000_000.0
GRID = GridView(import_limit_w=30_000.0, export_limit_w=10_000.0)


def fly(id="fly1", soc=0.8, *, power=10_000.0, cap=2_000.0, loss=0.25, ramp=math.inf):
    return StoreView(id, "flywheel", soc, cap, power if soc < 0.99 else 0.0, power if soc > 0.0 else 0.0,
                     -power, power, soc_min=0.0, soc_max=1.0, discharge_efficiency=0.95, charge_efficiency=0.95,
                     standing_loss_per_h=loss, ramp_w_per_s=ramp)


def ups(soc=1.0):
    return StoreView("ups", "ups", soc, 5_000.0, 2_000.0, 6_000.0, -2_000.0, 6_000.0, soc_min=0.05, soc_max=1.0,
                     reserve_soc=0.5)


def load(w, expected):
    return LoadView("load", w, w, expected, -50_000.0)


def test_two_flywheels_share_a_spike_and_never_exceed_it():
    cfg = ControlConfig(flywheel_spike_w=0.0)
    d = arbitrate(ArbiterInputs(t=T, dt=1.0, stores=(fly("fly1"), fly("fly2")), loads=(load(10_500.0, 1_000.0),),
                                grid=GRID, config=cfg))
    f1, f2 = d.setpoints["fly1"].power_w, d.setpoints["fly2"].power_w
    assert f1 + f2 == pytest.approx(9_500.0)  # not 19 kW
    assert f1 == pytest.approx(f2)  # equal energy: equal shares
    assert d.net_export_w == pytest.approx(-1_000.0)  # the grid sees the expected load, nothing is exported
    assert "share a peak" in d.setpoints["fly1"].reason


def test_planner_threshold_peak_is_shared_with_the_battery_covering_the_rest():
    bat = StoreView("bat", "battery", 0.8, 10_000.0, 5_000.0, 5_000.0, -5_000.0, 5_000.0, soc_min=0.05)
    cfg = ControlConfig(reserve_soc=0.2, idle_mode="idle")
    d = arbitrate(ArbiterInputs(t=T, dt=1.0, stores=(bat, fly("fly1", power=3_000.0), fly("fly2", power=3_000.0)),
                                loads=(load(20_000.0, 20_000.0),), grid=replace(GRID, import_limit_w=12_000.0),
                                commands=Commands(shave_above_w=12_000.0), config=cfg))
    flyw = d.setpoints["fly1"].power_w + d.setpoints["fly2"].power_w
    assert flyw == pytest.approx(6_000.0)  # both at their power limit
    assert d.setpoints["bat"].power_w == pytest.approx(2_000.0)  # the battery covers the rest of the 8 kW peak
    assert d.net_export_w == pytest.approx(-12_000.0)  # import held at the threshold, not below


def test_empty_flywheel_when_a_peak_comes_gives_nothing_and_the_reserve_starts():
    empty = fly("fly1", soc=0.0)
    plans = plan_flywheels([empty], t=T, dt=1.0, excess_w=5_000.0, headroom_w=0.0)
    assert plans[0][0] == 0.0 and "short" in plans[0][1][1]
    assert sustainable_w(empty, 60.0) == 0.0
    # grid 3 kW: the empty flywheel adds nothing to primary supply, so the reserve is started
    d = arbitrate(ArbiterInputs(t=T, dt=1.0, stores=(empty, ups()), loads=(load(6_000.0, 6_000.0),),
                                grid=replace(GRID, import_limit_w=3_000.0),
                                commands=Commands(demand_upper_w=6_500.0, reserve=ReserveState()),
                                config=ControlConfig()))
    assert d.reserve.active and d.setpoints["ups"].power_w == pytest.approx(3_000.0)
    # a charged flywheel covers the same peak and the reserve stays off
    d = arbitrate(ArbiterInputs(t=T, dt=1.0, stores=(fly("fly1", soc=0.9), ups()), loads=(load(6_000.0, 6_000.0),),
                                grid=replace(GRID, import_limit_w=3_000.0),
                                commands=Commands(demand_upper_w=6_500.0, reserve=ReserveState(),
                                                  shave_above_w=3_000.0),
                                config=ControlConfig()))
    assert not d.reserve.active and d.setpoints["fly1"].power_w == pytest.approx(3_000.0)


def test_precharge_waits_until_the_last_moment_its_power_allows():
    f = fly("fly1", soc=0.0, power=10_000.0, cap=2_000.0)
    spike = ((T + 600.0, T + 900.0, 12_000.0),)  # 1 kWh needed -> ~0.5 of 2 kWh
    early = plan_flywheels([f], t=T, dt=1.0, excess_w=0.0, headroom_w=50_000.0, spikes=spike)
    assert early[0][0] == 0.0 and "deferred" in early[0][1][1]
    # 1 kWh / 0.95 at 10 kW = ~379 s of charging: it must start by ~T + 600 - 381
    late = plan_flywheels([f], t=T + 600.0 - 390.0, dt=1.0, excess_w=0.0, headroom_w=50_000.0, spikes=spike)
    assert late[0][0] == pytest.approx(-10_000.0) and "pre-charge for" in late[0][1][1]
    # no import headroom (the site is at its threshold): pre-charge waits rather than make a peak
    capped = plan_flywheels([f], t=T + 300.0, dt=1.0, excess_w=0.0, headroom_w=0.0, spikes=spike)
    assert capped[0][0] == 0.0


def test_readiness_recharges_within_headroom_only():
    f = fly("fly1", soc=0.2)
    ready = plan_flywheels([f], t=T, dt=1.0, excess_w=0.0, headroom_w=1_000.0, readiness_soc=0.5)
    assert -1_000.0 <= ready[0][0] < 0 and "readiness" in ready[0][1][1]
    none = plan_flywheels([f], t=T, dt=1.0, excess_w=0.0, headroom_w=-5.0, readiness_soc=0.5)
    assert none[0][0] == 0.0
    full = plan_flywheels([fly("fly1", soc=0.6)], t=T, dt=1.0, excess_w=0.0, headroom_w=1e6, readiness_soc=0.5)
    assert full[0][0] == 0.0


def test_a_slow_ramp_makes_the_precharge_start_earlier():
    spike = ((T + 600.0, T + 900.0, 12_000.0),)
    at = T + 600.0 - 390.0  # late enough for a flywheel that reaches full power at once
    fast = plan_flywheels([fly("f", soc=0.0)], t=at, dt=1.0, excess_w=0.0, headroom_w=1e6, spikes=spike)
    slow = plan_flywheels([fly("f", soc=0.0, ramp=50.0)], t=at, dt=1.0, excess_w=0.0, headroom_w=1e6, spikes=spike)
    assert fast[0][0] < 0
    assert slow[0][0] < 0  # 200 s of ramp: it had to start even earlier, and is charging
    early = plan_flywheels([fly("f", soc=0.0, ramp=50.0)], t=at - 150.0, dt=1.0, excess_w=0.0, headroom_w=1e6,
                           spikes=spike)
    late_fast = plan_flywheels([fly("f", soc=0.0)], t=at - 150.0, dt=1.0, excess_w=0.0, headroom_w=1e6,
                               spikes=spike)
    assert early[0][0] < 0 and late_fast[0][0] == 0.0  # only the slow one starts 150 s earlier
