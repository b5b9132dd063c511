"""PV from real TMY3 irradiance: the shipped profile is what pvlib computes."""

import calendar

import pytest

from agent.devices.pv import PROFILES, PVModel, build_profile, load_profile


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_shipped_profile_matches_pvlib(name):
    assert list(load_profile(name)) == pytest.approx(build_profile(name), abs=2e-5)


def test_yield_is_plausible_and_nights_are_dark():
    p = load_profile("greensboro_nc")
    assert 1_300 < sum(p) < 1_900  # kWh per kWp per year, DC
    pv = PVModel(5_000, "greensboro_nc")
    noon = calendar.timegm((2025, 6, 21, 17, 0, 0)) # 12:00 local standard time
    midnight = calendar.timegm((2025, 6, 21, 5, 0, 0))
    assert pv.available_w(midnight) == 0.0
    assert pv.available_w(noon) > 1_500


def test_curtailment_and_clipping():
    pv = PVModel(5_000, rated_w=3_000, efficiency=0.96)
    t = calendar.timegm((2025, 6, 21, 17, 0, 0))
    assert pv.available_w(t) <= 3_000
    pv.limit_w = 500
    assert pv.power_w(t) == 500
