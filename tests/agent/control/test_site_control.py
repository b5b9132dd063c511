"""Control through the Site over sim devices: frequency response, owner first, fail-safe."""

import asyncio

import pytest

from agent.site import Site
from gridswarm.clock import ManualClock

T0 = 1_750_000_000.0 + 10 * 3600  # night, local time
BAT = {"type": "battery", "capacity_wh": 10_000, "max_charge_w": 5_000, "max_discharge_w": 5_000,
       "initial_soc": 0.5, "self_discharge_per_day": 0.0}
GRID = {"type": "grid", "import_limit_w": 15_000, "export_limit_w": 10_000}


def run(coro):
    return asyncio.run(coro)


def make(devices=(BAT, GRID), **kw):
    clock = ManualClock(T0)
    kw.setdefault("reserve_soc", 0.3)
    site = Site.from_config(list(devices), clock, seed=1, **kw)
    return site, clock


def test_frequency_response_is_local_and_fast():
    site, clock = make(idle_mode="idle")
    site.arm_frequency_response(droop=0.004, deadband_hz=0.02)
    run(site.tick())
    site.feed_frequency(49.8)
    clock.advance(0.01)
    st = run(site.tick())
    assert st.decision.source == "frequency"
    assert st.applied["battery1"] == pytest.approx(0.18 / 50 / 0.004 * 5_000, rel=1e-6)  # p_ref = AC rating
    site.feed_frequency(50.0)
    clock.advance(0.01)
    st = run(site.tick())
    assert st.applied["battery1"] == 0.0 and st.decision.source == "idle"


def test_feed_frequency_refuses_nonsense():
    site, _ = make()
    for bad in (float("nan"), 0.0, 500.0, "50"):
        with pytest.raises(ValueError):
            site.feed_frequency(bad)
    with pytest.raises(ValueError, match="mode"):
        site.arm_frequency_response(mode="yolo")


@pytest.mark.parametrize(("opt_in", "below_reserve"), [(False, False), (True, True)])
def test_grid_support_respects_the_owner_reserve_unless_opted_in(opt_in, below_reserve):
    site, clock = make(devices=({**BAT, "initial_soc": 0.32}, GRID), idle_mode="idle", emergency_opt_in=opt_in)
    site.arm_frequency_response(droop=0.004, deadband_hz=0.0, mode="emergency")
    site.feed_frequency(49.5)
    socs = []
    for _ in range(60):
        socs.append(run(site.tick()).soc)
        clock.advance(10)
    assert (min(socs) < 0.3 - 0.01) is below_reserve
    assert min(socs) >= 0.05 - 1e-9  # never below the hardware floor


def test_autonomous_drops_to_self_consumption_and_back():
    site, clock = make(devices=(BAT, {"type": "load", "profile": "household"}, GRID))
    site.set_market_schedule(T0, T0 + 3_600, 4_000)
    assert run(site.tick()).decision.source == "market"
    site.set_autonomous(True)
    clock.advance(60)
    st = run(site.tick())
    assert st.decision.source == "autonomous" and st.autonomous
    assert st.net_export_w == pytest.approx(0.0, abs=1e-6)
    site.set_autonomous(False)
    clock.advance(60)
    assert run(site.tick()).decision.source == "market"


def test_virtual_battery_request_and_bad_request():
    site, clock = make(idle_mode="idle")
    site.set_virtual_battery(T0, T0 + 600, -2_000)
    st = run(site.tick())
    assert st.decision.source == "virtual_battery" and st.applied["battery1"] == pytest.approx(-2_000)
    with pytest.raises(ValueError, match="power_w"):
        site.set_virtual_battery(T0, T0 + 600, 1e9)


def test_outage_flywheel_bridges_ups_takes_over():
    fly = {"type": "flywheel", "capacity_wh": 5_000, "max_power_w": 20_000, "initial_soc": 0.6}
    ups = {"type": "ups", "capacity_wh": 5_000, "max_charge_w": 2_000, "max_discharge_w": 6_000, "takeover_s": 2.0}
    load = {"type": "load", "profile": "datacentre", "peak_w": 5_000}
    small = {**BAT, "max_discharge_w": 500, "max_charge_w": 500}
    site, clock = make(devices=(small, fly, ups, load, GRID))
    run(site.tick())
    site.set_grid_outage(True)
    seen = []
    for _ in range(40):
        clock.advance(0.1)
        st = run(site.tick())
        seen.append((st.decision.setpoints["flywheel1"].power_w, st.decision.setpoints["ups1"].power_w,
                     st.decision.unserved_w))
    assert seen[0][0] > 0 and seen[0][1] == 0.0  # flywheel first, UPS not yet
    assert seen[-1][1] > 0  # UPS carries after its takeover delay
    assert all(u == 0.0 for _, _, u in seen)


def test_device_errors_are_reported_and_recover(caplog):
    site, clock = make(idle_mode="idle")
    bat = site.drivers["battery1"]
    run(site.tick())
    bat.inject_fault("timeout")
    caplog.set_level("INFO")
    for _ in range(3):
        clock.advance(1)
        st = run(site.tick())
        assert "DriverTimeoutError" in st.errors["battery1"]
        assert "battery1" not in st.decision.setpoints
    bat.inject_fault(None)
    clock.advance(1)
    st = run(site.tick())
    assert not st.errors
    failing = [r for r in caplog.records if "failing" in r.getMessage()]
    recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
    assert len(failing) == 1 and len(recovered) == 1
