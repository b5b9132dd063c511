"""Site: config validation, the control cycle over sim devices, meter, energy questions."""

import asyncio

import pytest

from agent.devices.spec import DeviceConfigError
from agent.site import TRACK_MARGIN_WH, Site
from gridswarm.clock import ManualClock

T0 = 1_750_000_000.0  # 2025-06-15 15:06 UTC, 10:06 local (UTC-5)

BAT = {"type": "battery", "capacity_wh": 10_000, "max_charge_w": 5_000, "max_discharge_w": 5_000,
       "round_trip_efficiency": 0.9, "initial_soc": 0.6}
PV = {"type": "pv", "peak_w": 6_000}
LOAD = {"type": "load", "profile": "household"}
GRID = {"type": "grid", "import_limit_w": 15_000, "export_limit_w": 10_000}
HOME = [BAT, PV, LOAD, GRID]


def run(coro):
    return asyncio.run(coro)


async def _ticks(site, clock, n, step):
    states = []
    for _ in range(n):
        states.append(await site.tick())
        clock.advance(step)
    await site.tick()  # meters the last step
    return states


def test_config_errors_name_the_field():
    clock = ManualClock(T0)
    with pytest.raises(DeviceConfigError, match=r"^devices\[1\]\.capacity_wh: must be > 0, got -5"):
        Site.from_config([BAT, {**BAT, "id": "b2", "capacity_wh": -5}], clock, seed=1, reserve_soc=0.2)
    with pytest.raises(DeviceConfigError, match=r"^reserve_soc: must be <= 1, got 1.5"):
        Site.from_config(HOME, clock, seed=1, reserve_soc=1.5)
    with pytest.raises(DeviceConfigError, match=r"^control.low_threshold: must be < high_threshold \(0.5\)"):
        Site.from_config(HOME, clock, seed=1, reserve_soc=0.2, low_threshold=0.9, high_threshold=0.5)


def test_self_consumption_keeps_the_grid_at_zero_while_the_battery_can():
    clock = ManualClock(T0)
    site = Site.from_config(HOME, clock, seed=1, reserve_soc=0.2)
    states = run(_ticks(site, clock, 60, 60.0))
    for st in states:
        assert 0.2 <= st.soc <= 0.95
        assert st.net_export_w == pytest.approx(0.0, abs=1e-6)
        assert st.decision.source == "idle"
    exported, imported = site.meter_window(T0, T0 + 3600)
    assert exported == pytest.approx(0.0, abs=1e-6) and imported == pytest.approx(0.0, abs=1e-6)


def test_market_schedule_is_delivered_and_metered():
    clock = ManualClock(T0)
    site = Site.from_config(HOME, clock, seed=1, reserve_soc=0.2)
    site.set_market_schedule(T0 + 300, T0 + 1200, 3_000)
    states = run(_ticks(site, clock, 30, 60.0))
    assert states[6].decision.source == "market"
    assert states[6].net_export_w == pytest.approx(3_000, rel=0.01)
    exported, imported = site.meter_window(T0 + 300, T0 + 1200)
    # the committed energy and the margin the site aims past it (the reading is rounded to the Wh)
    assert exported == pytest.approx(3_000 * 900 / 3600 + TRACK_MARGIN_WH) and imported == pytest.approx(0.0, abs=1e-6)


def test_a_schedule_arriving_mid_window_still_delivers_the_committed_energy():
    """The commitment is the window's energy: a dispatch that lands 5 min late is made up in the
    10 min left (the old rule held the power and fell 250 Wh short)."""
    clock = ManualClock(T0)
    site = Site.from_config(HOME, clock, seed=1, reserve_soc=0.2)
    run(site.tick())
    clock.set(T0 + 600)  # the window opened at T0 + 300
    site.set_market_schedule(T0 + 300, T0 + 1200, 1_000)
    states = run(_ticks(site, clock, 12, 60.0))
    exported, imported = site.meter_window(T0 + 300, T0 + 1200)
    assert exported - imported == pytest.approx(1_000 * 900 / 3600 + TRACK_MARGIN_WH, abs=0.5)
    assert states[1].net_export_w == pytest.approx(1_000 * 900 / 600, rel=0.02)  # the catch-up power


def test_energy_delivered_before_a_restart_counts_towards_the_commitment():
    clock = ManualClock(T0 + 300)
    site = Site.from_config(HOME, clock, seed=1, reserve_soc=0.2)
    site.set_market_schedule(T0 + 300, T0 + 1200, 2_000, delivered_wh=250.0)  # half of 500 Wh
    run(_ticks(site, clock, 15, 60.0))
    exported, imported = site.meter_window(T0 + 300, T0 + 1200)
    assert exported - imported == pytest.approx(250.0 + TRACK_MARGIN_WH, abs=0.5)
    with pytest.raises(ValueError, match="delivered_wh"):
        site.set_market_schedule(T0 + 300, T0 + 1200, 2_000, delivered_wh=float("nan"))


def test_catch_up_stays_inside_the_devices_limits():
    """Owed more than the storage can give in the time left: the battery runs at its rating,
    never past it, and the shortfall stays a shortfall."""
    clock = ManualClock(T0)
    site = Site.from_config(HOME, clock, seed=1, reserve_soc=0.2)
    run(site.tick())
    clock.set(T0 + 1080)  # 2 min before the end of a 15-min window of 4 kW
    site.set_market_schedule(T0 + 300, T0 + 1200, 4_000)
    states = run(_ticks(site, clock, 2, 60.0))
    assert all(st.decision.setpoints["battery1"].power_w <= 5_000 + 1e-6 for st in states)
    exported, _ = site.meter_window(T0 + 300, T0 + 1200)
    assert exported < 4_000 * 900 / 3600


@pytest.mark.parametrize("step", [1.0, 10.0, 60.0])
def test_integration_follows_clock_time_not_calls(step):
    clock = ManualClock(T0)
    bat = {**BAT, "self_discharge_per_day": 0.0, "cycle_fade": 0.0}
    site = Site.from_config([bat, GRID], clock, seed=1, reserve_soc=0.2)
    site.set_market_schedule(T0, T0 + 900, 2_000)
    run(_ticks(site, clock, int(900 / step), step))
    exported, _ = site.meter_window(T0, T0 + 900)
    assert exported == pytest.approx(500.0 + TRACK_MARGIN_WH)
    soc = site.last_state.soc
    # 501 Wh AC out of a battery at sqrt(0.9) * 0.97 one-way efficiency
    assert soc == pytest.approx(0.6 - (500 + TRACK_MARGIN_WH) / (0.9**0.5 * 0.97) / 10_000, abs=1e-9)


def test_same_seed_same_run_other_seed_other_run():
    def trace(seed):
        clock = ManualClock(T0)
        site = Site.from_config(HOME, clock, seed=seed, reserve_soc=0.2)
        return [(s.soc, s.devices["load1"].power_w) for s in run(_ticks(site, clock, 50, 30.0))]

    assert trace(3) == trace(3)
    assert trace(3) != trace(4)


def test_energy_is_conserved_at_the_grid_meter():
    clock = ManualClock(T0)
    site = Site.from_config(HOME, clock, seed=2, reserve_soc=0.2, idle_mode="idle")
    run(_ticks(site, clock, 120, 60.0))
    tel = site.last_state.devices
    delivered = sum(t.energy_out_wh - t.energy_in_wh for k, t in tel.items() if k != "grid1")
    exported, imported = site.meter_window(T0 - 1, T0 + 7200 + 1)
    assert exported - imported == pytest.approx(delivered)
    assert imported > 0 or exported > 0


def test_reserve_stops_discharge_and_bounds_offers():
    clock = ManualClock(T0 + 10 * 3600)  # night
    bat = {**BAT, "initial_soc": 0.5, "self_discharge_per_day": 0.0}
    site = Site.from_config([bat, LOAD, GRID], clock, seed=1, reserve_soc=0.4)
    run(site.tick())
    avail = site.available_export_wh(clock.now() + 60, clock.now() + 960)
    expected_load = -site.expected_net_wh(clock.now() + 60, clock.now() + 960)
    assert avail == pytest.approx(max(0.0, 0.1 * 10_000 * 0.9**0.5 * 0.97 - expected_load), rel=1e-6)
    states = run(_ticks(site, clock, 300, 60.0))
    assert min(s.soc for s in states) >= 0.4 - 1e-9
    assert states[-1].decision.source == "reserve"
    assert states[-1].decision.setpoints["battery1"].power_w <= 0.0
    assert site.available_export_wh(clock.now(), clock.now() + 900) == 0.0


def test_bad_schedule_changes_nothing():
    clock = ManualClock(T0)
    site = Site.from_config(HOME, clock, seed=1, reserve_soc=0.2)
    run(site.tick())
    for args in [(T0, T0 + 900, 50_000), (T0, T0 + 900, -20_000), (T0 + 900, T0, 100), (T0, T0 + 900, float("nan"))]:
        with pytest.raises(ValueError):
            site.set_market_schedule(*args)
    clock.advance(60)
    assert run(site.tick()).decision.source == "idle"


def test_outage_islands_the_site_and_sheds_load():
    clock = ManualClock(T0 + 10 * 3600)  # night: no PV
    small = {**BAT, "max_discharge_w": 800, "max_charge_w": 800}
    site = Site.from_config([small, {**LOAD, "peak_w": 6_000}, GRID], clock, seed=1, reserve_soc=0.3)
    run(site.tick())
    site.set_grid_outage(True)
    clock.advance(10)
    states = run(_ticks(site, clock, 20, 30.0))
    assert all(s.outage for s in states)
    assert all(s.net_export_w == pytest.approx(0.0, abs=1e-6) or s.decision.unserved_w > 0 for s in states)
    shed = [s for s in states if s.decision.setpoints["load1"].source == "local"]
    assert shed, "some load is shed when the battery cannot carry it"
    exported, imported = site.meter_window(clock.now() - 600, clock.now())
    assert exported == 0.0 and imported == 0.0


def test_check_probes_every_device():
    clock = ManualClock(T0)
    site = Site.from_config(HOME, clock, seed=1, reserve_soc=0.2)
    results = run(site.check())
    assert [r.device_id for r in results] == ["battery1", "pv1", "load1", "grid1"]
    assert all(r.ok for r in results)
    assert "TMY3" in results[1].detail


def test_the_site_imports_nothing_heavy():
    # footprint: a sim site runs without pandas/pvlib/numpy/web3/pymodbus in the process
    import subprocess
    import sys

    site = [{**BAT, "inverter": {"rated_w": 5_000, "efficiency": 0.97}},
            {**PV, "inverter": {"rated_w": 5_000, "efficiency": 0.96}}, LOAD, GRID]
    code = ("import sys; from agent.site import Site; from gridswarm.clock import ManualClock; "
            f"Site.from_config({site!r}, ManualClock(0.0), seed=1, reserve_soc=0.2); "
            "print(sorted(m for m in ('pvlib', 'pandas', 'numpy', 'web3', 'pymodbus', 'fastapi') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_probe_results_turn_into_json_ready_dicts():
    import json

    clock = ManualClock(T0)
    site = Site.from_config(HOME, clock, seed=1, reserve_soc=0.2)
    [bat, *_] = run(site.check())
    d = dict(bat)
    assert d["ok"] is True and d["telemetry"]["soc"] == pytest.approx(0.6)
    json.dumps(d)


def test_nominal_frequency_comes_from_the_grid_driver_or_the_grid_config_default():
    clock = ManualClock(T0)
    site = Site.from_config([BAT, {**GRID, "nominal_hz": 60.0}], clock, seed=1, reserve_soc=0.2)
    assert site.arm_frequency_response().nominal_hz == 60.0
    assert site.frequency_source() is site.drivers["grid1"]  # the sim grid measures, even before a read
    no_grid = Site.from_config([BAT], clock, seed=1, reserve_soc=0.2)
    assert no_grid.arm_frequency_response().nominal_hz == 50.0 and no_grid.frequency_source() is None
    with pytest.raises(RuntimeError, match="needs a sim grid device"):
        no_grid.set_grid_outage(True)
