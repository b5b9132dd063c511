import pytest

from agent.devices.inverter import InverterModel


def test_rating_and_dc_limits_clamp_the_accepted_setpoint():
    inv = InverterModel(4_000, 0.95)
    assert inv.accept(6_000, 10_000, 10_000) == 4_000
    assert inv.accept(-6_000, 10_000, 10_000) == -4_000
    assert inv.accept(3_000, 10_000, 2_000) == pytest.approx(1_900)  # DC can give 2 kW -> 1.9 kW AC


def test_ramp_limits_the_reached_power():
    inv = InverterModel(10_000, 1.0, ramp_w_per_s=1_000)
    inv.accept(5_000, 10_000, 10_000)
    assert inv.ramp(2.0) == 2_000
    assert inv.ramp(10.0) == 5_000


def test_efficiency_both_ways():
    inv = InverterModel(10_000, 0.9)
    assert inv.dc_for(900) == pytest.approx(1_000)
    assert inv.dc_for(-1_000) == pytest.approx(-900)
