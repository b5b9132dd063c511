"""Energy store models: efficiency, SoC window, self-discharge, temperature, health, flywheel losses."""

import math

import pytest

from agent.devices.spec import validate_devices
from agent.devices.storage import battery_from_spec, flywheel_from_spec


def _battery(**kw):
    raw = {"type": "battery", "capacity_wh": 10_000, "max_charge_w": 5_000, "max_discharge_w": 5_000,
           "initial_soc": 0.5, "self_discharge_per_day": 0.0, **kw}
    return battery_from_spec(validate_devices([raw])[0])


def test_round_trip_efficiency_is_below_one():
    b = _battery(round_trip_efficiency=0.9, cycle_fade=0.0)
    e0 = b.energy_wh
    got_in = -b.step(-2_000, 3600) * 1.0  # 1 h charge at 2 kW
    stored = b.energy_wh - e0
    assert got_in == pytest.approx(2_000)
    assert stored == pytest.approx(2_000 * math.sqrt(0.9))
    out = 0.0
    while b.energy_wh > e0 + 1e-6:
        p = b.step(min(2_000, (b.energy_wh - e0) * math.sqrt(0.9) * 3600 / 60), 60)
        out += p * 60 / 3600
    assert out / 2_000 == pytest.approx(0.9, rel=1e-3)


def test_soc_window_is_never_left():
    b = _battery(soc_min=0.1, soc_max=0.9, initial_soc=0.85)
    for _ in range(10):
        b.step(-5_000, 600)
    assert b.soc == pytest.approx(0.9, abs=1e-9)
    assert b.dc_limits()[0] == 0.0
    for _ in range(30):
        b.step(5_000, 600)
    assert b.soc >= 0.1 - 1e-9
    assert b.dc_limits()[1] == 0.0


def test_self_discharge_at_rest():
    b = _battery(self_discharge_per_day=0.02)
    e0 = b.energy_wh
    for _ in range(24):
        b.step(0.0, 3600)
    assert b.energy_wh == pytest.approx(e0 * 0.98, rel=1e-9)


def test_losses_heat_the_pack_and_heat_stops_it():
    b = _battery(round_trip_efficiency=0.8, thermal_mass_j_per_k=5_000, thermal_resistance_k_per_w=0.1,
                 temp_max_c=40, initial_soc=0.1, soc_min=0.0, soc_max=1.0)
    t0 = b.temperature_c
    b.step(-5_000, 600)
    assert b.temperature_c > t0
    b.temperature_c = 41.0
    assert b.dc_limits() == (0.0, 0.0)
    b.temperature_c = 37.5  # within 5 °C of the limit: derated
    chg, dis = b.dc_limits()
    assert 0 < chg < 5_000 and 0 < dis < 5_000


def test_state_of_health_fades_with_cycling():
    b = _battery(cycle_fade=1e-3, initial_soc=0.5)
    soh0 = b.soh
    for _ in range(5):
        b.step(-5_000, 3600)
        b.step(5_000, 3600)
    assert b.soh < soh0
    assert b.capacity_wh == pytest.approx(10_000 * b.soh)


def test_flywheel_drains_within_hours():
    spec = validate_devices([{"type": "flywheel", "capacity_wh": 7_500, "initial_soc": 0.9, "soc_min": 0.0,
                              "standing_loss_per_h": 0.25}])[0]
    f = flywheel_from_spec(spec)
    for _ in range(4 * 60):
        f.step(0.0, 60)
    assert f.soc < 0.9 * 0.35
