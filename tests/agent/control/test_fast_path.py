"""The fast frequency path: replayed traces, the DC curve, writes between ticks, the reserve."""

import asyncio
import gzip
import math

import pytest

from agent.control.fast_path import FrequencyFastPath
from agent.control.frequency import dynamic_containment, response_w
from agent.devices.frequency_trace import FrequencyTrace, load_trace
from agent.devices.spec import DeviceConfigError
from agent.site import Site
from gridswarm.clock import ManualClock

T0 = 1_750_000_000.0 + 10 * 3600
BAT = {"type": "battery", "capacity_wh": 10_000, "max_charge_w": 5_000, "max_discharge_w": 5_000,
       "initial_soc": 0.6, "self_discharge_per_day": 0.0}


def grid(**trace):
    return {"type": "grid", "import_limit_w": 15_000, "export_limit_w": 10_000,
            "frequency_trace": {"base": "gb_normal_day", "start_ts": T0, **trace}}


def make(devices, **kw):
    clock = ManualClock(T0)
    kw.setdefault("reserve_soc", 0.3)
    kw.setdefault("idle_mode", "idle")
    return Site.from_config(devices, clock, seed=1, **kw), clock


def test_shipped_traces_are_what_their_headers_say():
    t, hz = load_trace("gb_normal_day")
    assert len(t) == 86_400 and t[1] - t[0] == 1.0  # a day at 1 s
    mean = sum(hz) / len(hz)
    std = math.sqrt(sum((f - mean) ** 2 for f in hz) / len(hz))
    assert 49.8 <= min(hz) and max(hz) <= 50.2 and 0.03 < std < 0.09
    t, hz = load_trace("gb_loss_of_infeed")
    assert t[1] - t[0] == pytest.approx(0.1)
    before = [f for ts, f in zip(t, hz, strict=True) if ts < 60]
    assert min(before) > 49.8 and min(hz) < 49.6  # a large loss of infeed after 60 s


def test_trace_replay_follows_the_clock_and_the_event_overrides():
    tr = FrequencyTrace("gb_normal_day", start_ts=T0, event="gb_loss_of_infeed", event_ts=T0 + 1000)
    t, hz = load_trace("gb_normal_day")
    assert tr.at(T0 + 10) == pytest.approx(hz[10])
    assert tr.at(T0 + 10.25) == pytest.approx(0.75 * hz[10] + 0.25 * hz[11])  # continuous between samples
    assert tr.at(T0 + 86_400 + 10) == pytest.approx(hz[10])  # loops daily
    assert tr.at(T0 + 86_399.5) == pytest.approx(0.5 * hz[-1] + 0.5 * hz[0])  # ... through the wrap
    et, ehz = load_trace("gb_loss_of_infeed")
    assert tr.at(T0 + 1000 + 63.3) == pytest.approx(ehz[633])
    assert tr.at(T0 + 1000 + 63.35) == pytest.approx(0.5 * (ehz[633] + ehz[634]))
    assert tr.at(T0 + 1000 + 2000) == tr._at("gb_normal_day", 3000, True)  # event over


@pytest.mark.parametrize("bad, field", [({"base": "nope"}, "frequency_trace"), ({"bogus": 1}, "frequency_trace"),
                                        ({"event": "gb_loss_of_infeed"}, "frequency_trace")])
def test_bad_trace_config_names_the_field(bad, field):
    with pytest.raises(DeviceConfigError, match=field):
        make([BAT, {"type": "grid", "frequency_trace": bad}])


def test_trace_file_errors(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("t_s,hz\n0,50\n1,500\n")
    with pytest.raises(ValueError, match="line 3"):
        load_trace(str(p))
    p2 = tmp_path / "g.csv.gz"
    with gzip.open(p2, "wt") as fh:
        fh.write("# mine\n0,50.0\n1,49.9\n")
    assert load_trace(str(p2)) == ((0.0, 1.0), (50.0, 49.9))


@pytest.mark.parametrize("df, frac", [(0.01, 0.0), (0.015, 0.0), (0.2, 0.05), (0.35, 0.525), (0.5, 1.0), (0.8, 1.0)])
def test_dynamic_containment_curve(df, frac):
    arm = dynamic_containment(1000.0)
    assert response_w(arm, 50.0 - df) == pytest.approx(1000.0 * frac, abs=1e-6)
    assert response_w(arm, 50.0 + df) == pytest.approx(-1000.0 * frac, abs=1e-6)


def test_fast_path_writes_between_ticks_through_the_driver():
    site, clock = make([BAT, grid(event="gb_loss_of_infeed", event_ts=T0 + 100)])
    arm = dynamic_containment(3000.0)
    site.arm_frequency_response(droop=arm.droop, deadband_hz=arm.deadband_hz, p_ref_w=3000.0, max_power_w=3000.0,
                                knee_hz=arm.knee_hz, knee_fraction=arm.knee_fraction)
    fp = FrequencyFastPath(site, clock, poll_s=0.1, min_change_w=10.0)
    asyncio.run(site.tick())
    ticks = site.ticks
    clock.set(T0 + 100 + 63.35)  # the event's nadir; no control tick in between
    assert asyncio.run(fp.step())
    assert site.ticks == ticks
    bat = site.drivers["battery1"]
    f = fp.last_hz
    assert f is not None and f < 49.6
    assert bat.last_setpoint.power_w == pytest.approx(response_w(site.frequency_arm, f), rel=1e-6)
    assert bat.last_setpoint.source == "frequency"
    assert fp.response_w == pytest.approx(bat.last_setpoint.power_w)
    assert not asyncio.run(fp.step())  # same frequency: nothing written again


def test_fast_path_keeps_the_owners_reserve():
    low = {**BAT, "initial_soc": 0.3}
    site, clock = make([low, grid(event="gb_loss_of_infeed", event_ts=T0 + 100)])
    site.arm_frequency_response(droop=0.0097, deadband_hz=0.015, p_ref_w=3000.0, mode="emergency")
    fp = FrequencyFastPath(site, clock)
    asyncio.run(site.tick())
    clock.set(T0 + 100 + 63.35)
    asyncio.run(fp.step())
    assert site.drivers["battery1"].last_setpoint is None or site.drivers["battery1"].last_setpoint.power_w <= 1e-6
    assert site.frequency_request_w(clock.now()) > 1000 and fp.response_w == 0.0  # asked, not delivered
    # the owner opted in: an emergency may go below the reserve
    site2, clock2 = make([low, grid(event="gb_loss_of_infeed", event_ts=T0 + 100)], emergency_opt_in=True)
    site2.arm_frequency_response(droop=0.0097, deadband_hz=0.015, p_ref_w=3000.0, mode="emergency")
    asyncio.run(site2.tick())
    clock2.set(T0 + 100 + 63.35)
    asyncio.run(FrequencyFastPath(site2, clock2).step())
    assert site2.drivers["battery1"].last_setpoint.power_w > 1000


def test_slow_tick_uses_the_measured_frequency_without_the_fast_path():
    site, clock = make([BAT, grid(event="gb_loss_of_infeed", event_ts=T0 + 100)])
    site.arm_frequency_response(droop=0.0097, deadband_hz=0.015, p_ref_w=3000.0)
    clock.set(T0 + 100 + 63.35)
    st = asyncio.run(site.tick())
    assert st.frequency_hz is not None and st.frequency_hz < 49.6
    assert st.decision.source == "frequency" and st.applied["battery1"] > 2000


def test_a_failed_device_delivers_nothing_and_the_others_are_counted():
    bat2 = {**BAT, "id": "battery2"}
    site, clock = make([{**BAT, "id": "battery1"}, bat2, grid(event="gb_loss_of_infeed", event_ts=T0 + 100)])
    site.arm_frequency_response(droop=0.0097, deadband_hz=0.015, p_ref_w=8000.0, max_power_w=8000.0)
    fp = FrequencyFastPath(site, clock)
    asyncio.run(site.tick())
    site.drivers["battery2"].inject_fault("timeout")
    clock.set(T0 + 100 + 63.35)
    asyncio.run(fp.step())
    asked = site.frequency_request_w(clock.now())
    one = site.drivers["battery1"].last_setpoint.power_w
    assert asked > 5000 and site.frequency_delivered_w < asked
    assert site.frequency_delivered_w == pytest.approx(min(asked, one), rel=1e-3)


def test_event_mode_polls_faster_and_records_each_write(tmp_path):
    import json

    from gridswarm.clock import ScaledClock

    site, clock = make([BAT, {"type": "grid"}])
    site.arm_frequency_response(droop=0.0097, deadband_hz=0.015, p_ref_w=3000.0, max_power_w=3000.0,
                                knee_hz=0.2, knee_fraction=0.05)
    rec = tmp_path / "fr.jsonl"
    fp = FrequencyFastPath(site, clock, poll_s=0.05, event_poll_s=0.01, record_path=rec)
    asyncio.run(site.tick())
    site.feed_frequency(50.0)
    asyncio.run(fp.step())
    assert not fp.in_event()
    clock.set(T0 + 1)
    site.feed_frequency(49.7)  # far off nominal: event rate
    assert asyncio.run(fp.step()) and fp.in_event()
    clock.set(T0 + 1.01)
    site.feed_frequency(49.69)
    asyncio.run(fp.step())
    clock.set(T0 + 20)
    site.feed_frequency(50.0)  # back, slowly (0.02 Hz/s): normal rate after the hold
    asyncio.run(fp.step())
    assert not fp.in_event()
    rows = [json.loads(line) for line in rec.read_text().splitlines()]
    assert [r["t"] for r in rows] == sorted(r["t"] for r in rows) and len(rows) >= 3
    assert rows[1]["hz"] == 49.7 and rows[1]["share_w"] == 3000.0
    assert rows[1]["delivered_w"] == pytest.approx(response_w(site.frequency_arm, 49.7), rel=1e-6)
    assert rows[-1]["delivered_w"] == 0.0
    # on a clock scaled 100x the event rate is floored at 2 ms of wall time (0.2 s clock > poll_s)
    fast = FrequencyFastPath(site, ScaledClock(T0, 100.0), poll_s=0.05, event_poll_s=0.01)
    assert fast.event_poll_s == 0.05
    with pytest.raises(ValueError, match="event_poll_s"):
        FrequencyFastPath(site, clock, poll_s=0.05, event_poll_s=0.1)
