"""What the agent tells the fleet: per-device telemetry that validates, alarms raised and cleared."""

import asyncio
import math

import pytest

from agent.fleet_link import AlarmTracker, telemetry_body
from agent.site import Site
from gridswarm.clock import ManualClock
from gridswarm.envelope import MalformedEnvelope
from gridswarm.messages import Telemetry, validate_body

T0 = 1_750_000_000.0
DEVICES = [
    {"type": "battery", "capacity_wh": 10_000, "max_charge_w": 4_000, "max_discharge_w": 5_000, "initial_soc": 0.7},
    {"type": "load", "profile": "household", "peak_w": 2_000},
    {"type": "grid"},
]


def site_and_state():
    clock = ManualClock(T0)
    site = Site.from_config(DEVICES, clock, seed=3, reserve_soc=0.3)
    return site, clock, asyncio.run(site.tick())


def test_telemetry_body_carries_each_device_and_validates():
    site, clock, st = site_and_state()
    body = telemetry_body(st, site, 7, clock.now(), response_w=12.5)
    parsed = validate_body("telemetry", body)
    assert isinstance(parsed, Telemetry)
    bat = parsed.devices["battery1"]
    assert bat.kind == "battery" and bat.soc == pytest.approx(0.7, abs=0.01)
    eff = st.devices["battery1"].detail["discharge_efficiency"]
    assert 0.8 < eff < 1.0
    # above the owner's reserve, as delivered after the discharge losses
    assert bat.usable_wh == pytest.approx((bat.soc - 0.3) * 10_000 * eff, rel=1e-6)
    lim = site.drivers["battery1"].limits
    assert bat.rated_w == max(-lim.min_w, lim.max_w) and 4_000 < bat.rated_w <= 5_000
    assert bat.max_discharge_w > 0 and bat.max_charge_w > 0
    assert bat.soh is not None and bat.reserve_soc == 0.3
    assert parsed.devices["load1"].kind == "load" and parsed.response_w == 12.5


@pytest.mark.parametrize("path, value, field", [
    (("net_export_w",), math.nan, "net_export_w"),
    (("soc",), 1.5, "soc"),
    (("devices", "battery1", "soc"), -0.1, "devices.battery1.soc"),
    (("devices", "battery1", "usable_wh"), 1e6, "devices.battery1"),
    (("devices", "battery1", "power_w"), math.inf, "devices.battery1.power_w"),
    (("devices", "battery1", "temperature_c"), 900.0, "devices.battery1.temperature_c"),
    (("devices", "battery1", "max_discharge_w"), -5.0, "devices.battery1.max_discharge_w"),
    (("frequency_hz",), 5.0, "frequency_hz"),
])
def test_impossible_telemetry_is_refused_naming_the_field(path, value, field):
    site, clock, st = site_and_state()
    body = telemetry_body(st, site, 7, clock.now())
    d = body
    for p in path[:-1]:
        d = d[p]
    d[path[-1]] = value
    with pytest.raises(MalformedEnvelope, match=field.replace(".", r"\.")):
        validate_body("telemetry", body)


def test_alarms_are_raised_once_and_cleared():
    site, clock, st = site_and_state()
    tracker = AlarmTracker()
    assert tracker.update(st, site, clock.now()) == []
    site.drivers["battery1"].inject_fault("timeout")
    clock.advance(10)
    st = asyncio.run(site.tick())
    raised = tracker.update(st, site, clock.now())
    assert [(a["code"], a["device"], a["severity"], a["active"]) for a in raised] == [
        ("device_error", "battery1", "critical", True)]
    for a in raised:
        validate_body("alarm", a)
    clock.advance(10)
    assert tracker.update(asyncio.run(site.tick()), site, clock.now()) == []  # still active: not sent again
    site.drivers["battery1"].inject_fault(None)
    clock.advance(10)
    cleared = tracker.update(asyncio.run(site.tick()), site, clock.now())
    assert [(a["code"], a["device"], a["active"]) for a in cleared] == [("device_error", "battery1", False)]
    assert tracker.active == {}


def test_draw_ahead_is_the_forecast_upper_bound_then_the_loads_rating():
    """The site's own draw ahead, hour by hour: its import forecast's 80 % upper bound where the
    outlook covers the hour, its loads' rating (the sim load allows 1.2 x its peak) elsewhere."""
    from types import SimpleNamespace

    from agent.fleet_link import draw_ahead_wh

    site, clock, st = site_and_state()
    rated = -site.drivers["load1"].limits.min_w
    assert rated == pytest.approx(2_400.0)
    assert draw_ahead_wh(site, None, T0) == [pytest.approx(rated)] * 24
    body = validate_body("telemetry", telemetry_body(st, site, 7, clock.now()))
    assert body.draw_ahead_wh == [pytest.approx(rated)] * 24
    # a forecast of 500 W for two hours from T0 + 600 (24 steps of 300 s), -100 W (PV) in the
    # last step: the 10 minutes before it count at its first step's rate
    upper = (500.0,) * 23 + (-100.0,)
    outlook = SimpleNamespace(start_ts=T0 + 600, step_s=300.0, profile_upper80=upper)
    draw = draw_ahead_wh(site, outlook, T0)
    assert draw[:2] == [pytest.approx(500.0), pytest.approx(500.0)]
    assert draw[2] == pytest.approx(rated)  # the forecast ends 10 min into the third hour
    assert draw_ahead_wh(site, outlook, T0 + 600)[:2] == [pytest.approx(500.0), pytest.approx(500.0 * 11 / 12, abs=0.1)]
    # a forecast that is not finite is not believed: the rating stands
    bad = SimpleNamespace(start_ts=T0, step_s=300.0, profile_upper80=(math.nan,) * 24)
    assert draw_ahead_wh(site, bad, T0)[0] == pytest.approx(rated)
