"""Fleet state, sizing by headroom above the reserve, health exclusion, modes, arms."""

import asyncio

import pytest

from coordinator.services import FleetService, FleetSettings
from coordinator.services.fleet import dc_fraction
from coordinator.services.sizing import max_rate_w, size_service
from coordinator.store import Store
from gridswarm.clock import ManualClock
from gridswarm.messages import validate_body

T0 = 1_800_000_000.0


class FakeHub:
    def __init__(self, addresses):
        self.links = {a: None for a in addresses}
        self.sent = []

    async def send(self, address, kind, body):
        self.sent.append((address, kind, body))
        return True


def battery(soc=0.8, cap=10_000.0, reserve=0.3, max_w=5_000.0, **kw):
    kw.setdefault("power_w", 0.0)
    return {"kind": "battery", "soc": soc, "capacity_wh": cap, "usable_wh": max(0.0, (soc - reserve) * cap),
            "max_discharge_w": max_w, "max_charge_w": max_w, "rated_w": max_w, "soh": 0.95, "temperature_c": 25.0,
            "reserve_soc": reserve, **kw}


def telemetry(ts, devices, rid=1, hz=50.0, response=0.0, opt_in=False):
    return validate_body("telemetry", {"ts": ts, "net_export_w": 0.0, "soc": 0.5, "record_id": rid, "devices": devices,
                                       "frequency_hz": hz, "response_w": response, "emergency_opt_in": opt_in})


def service(tmp_path, addresses=("A", "B"), **kw):
    clock = ManualClock(T0)
    hub = FakeHub(addresses)
    fl = FleetService(FleetSettings(**kw), Store(tmp_path / "c.sqlite"), clock, hub)
    return fl, clock, hub


def test_shares_follow_the_rule_and_never_exceed_headroom():
    s = size_service({"a": 1000.0, "b": 3000.0}, 2000.0)
    assert s.shares == {"a": 500.0, "b": 1500.0} and s.shortfall_w == 0
    s = size_service({"a": 1000.0, "b": 3000.0}, 6000.0)  # more than the fleet has
    assert s.shares == {"a": 1000.0, "b": 3000.0} and s.shortfall_w == 2000.0
    with pytest.raises(ValueError, match="required_w"):
        size_service({"a": 1.0}, float("nan"))


def test_max_rate_is_headroom_above_the_reserve():
    devs = {"b1": battery(soc=0.35), "b2": battery(soc=0.9)}
    # b1: 500 Wh above reserve over 900 s = 2000 W; b2: 6000 Wh -> power-limited 5000 W
    assert max_rate_w(devs, {"b1", "b2"}, 900.0) == pytest.approx(7000.0)
    assert max_rate_w(devs, {"b2"}, 900.0) == pytest.approx(5000.0)
    # a battery already covering its own site's 1500 W has that much less to give
    assert max_rate_w({"b2": battery(soc=0.9, power_w=1500.0)}, {"b2"}, 900.0) == pytest.approx(3500.0)
    # ... but the frequency response it delivers now is the service itself: it counts as headroom
    busy = battery(soc=0.9, power_w=4000.0)
    assert max_rate_w({"b2": busy}, {"b2"}, 900.0, response_w=3000.0) == pytest.approx(4000.0)
    # emergency, owner opted in: energy below the reserve counts too
    assert max_rate_w(devs, {"b1"}, 900.0, below_reserve=True) == pytest.approx(5000.0)


def test_arms_carry_each_units_share_and_expire(tmp_path):
    fl, clock, hub = service(tmp_path, required_w=3000.0)
    fl.on_telemetry("A", telemetry(T0, {"b": battery(soc=0.35)}))  # 2000 W headroom
    fl.on_telemetry("B", telemetry(T0, {"b": battery(soc=0.9)}))  # 5000 W
    assert asyncio.run(fl.rearm("test")) == 2
    arms = {a: b for a, k, b in hub.sent}
    assert arms["A"]["share_w"] == pytest.approx(3000 * 2000 / 7000, rel=1e-3)
    assert arms["B"]["share_w"] == pytest.approx(3000 * 5000 / 7000, rel=1e-3)
    for body in arms.values():
        parsed = validate_body("arm", body)
        assert parsed.until_ts == T0 + fl.settings.arm_ttl_s and parsed.deadband_hz == 0.015
        assert parsed.mode == "grid_support" and parsed.knee_hz == 0.2


def test_unhealthy_or_silent_units_are_excluded_with_events(tmp_path):
    fl, clock, hub = service(tmp_path, required_w=3000.0, stale_s=60.0)
    fl.on_telemetry("A", telemetry(T0, {"b": battery(temperature_c=70.0)}))
    fl.on_telemetry("B", telemetry(T0, {"b": battery()}))
    assert fl.check(T0)
    snap = fl.snapshot()
    assert snap["excluded"] == [{"address": "A", "device": "b", "reasons": ["temperature 70.0 C outside [-20, 55] C"]}]
    asyncio.run(fl.rearm("test"))
    arms = {a: b for a, k, b in hub.sent}
    assert arms["A"] == {"armed": False} and arms["B"]["share_w"] == pytest.approx(3000.0)
    # an alarm on a device excludes it; its clearing brings it back
    fl.on_alarm("B", validate_body("alarm", {"code": "device_error", "device": "b", "severity": "critical",
                                             "message": "b: timeout", "active": True}))
    assert fl.check(T0) and fl.sites["B"].excluded == {"b": ["alarm device_error"]}
    fl.on_alarm("B", validate_body("alarm", {"code": "device_error", "device": "b", "severity": "info",
                                             "message": "cleared", "active": False}))
    assert fl.check(T0) and fl.sites["B"].excluded == {}
    clock.advance(61)  # B goes silent
    assert fl.check(clock.now())
    assert "telemetry silent" in fl.sites["B"].excluded["*"][0]
    kinds = [(e["kind"], e["address"]) for e in fl.snapshot()["events"]]
    assert ("excluded", "A") in kinds and ("recovered", "B") in kinds and kinds[-1] == ("excluded", "B")
    assert len(fl.store.query("select * from fleet_events")) == len(kinds)
    assert len(fl.store.query("select * from fleet_alarms")) == 2


def test_measured_event_switches_to_emergency_and_back(tmp_path):
    fl, clock, hub = service(tmp_path, required_w=3000.0, emergency_hold_s=100.0)
    fl.on_telemetry("A", telemetry(T0, {"b": battery(soc=0.31)}, opt_in=True))
    fl.on_telemetry("B", telemetry(T0, {"b": battery(soc=0.31)}, opt_in=False))
    fl.resize(T0)
    assert fl.modes.mode(T0) == "support"
    normal = {a: r.max_rate_w for a, r in fl.sites.items()}
    clock.advance(1)
    fl.on_telemetry("B", telemetry(clock.now(), {"b": battery(soc=0.31)}, rid=2, hz=49.55, response=900.0))
    assert fl.modes.mode(clock.now()) == "emergency"
    fl.resize(clock.now())
    # only the owner who opted in lends energy below the reserve
    assert fl.sites["A"].max_rate_w > normal["A"] and fl.sites["B"].max_rate_w == normal["B"]
    assert fl.arm_body("A", clock.now())["mode"] == "emergency"
    ev = fl.snapshot()["frequency_events"][-1]
    assert ev["min_hz"] == 49.55 and ev["peak_delivered_w"] == 900.0
    clock.advance(101)
    assert fl.modes.mode(clock.now()) == "support"
    # the operator's standby is never lifted by an event
    fl.set_mode("standby")
    fl.on_telemetry("B", telemetry(clock.now(), {"b": battery()}, rid=3, hz=49.5))
    assert fl.modes.mode(clock.now()) == "standby"


def test_dc_fraction():
    assert dc_fraction(0.01) == 0 and dc_fraction(0.2) == pytest.approx(0.05) and dc_fraction(-0.5) == pytest.approx(-1)
