"""The arbiter, table-driven and cycle by cycle (OpenEMS ControllerTest style).

Each case gives one tick's inputs (fake devices as views) and the expected outcome: which
source decided the site's storage power, the storage power, and selected device setpoints.
"""

import math
from dataclasses import replace

import pytest

from agent.control.arbiter import (
    ArbiterInputs,
    Commands,
    ControlConfig,
    GridView,
    LoadView,
    PVView,
    StoreView,
    arbitrate,
)
from agent.control.frequency import FrequencyArm

T = 1_000_000.0


def bat(soc=0.6, *, id="bat", chg=5_000.0, dis=5_000.0, prev=0.0, ramp=math.inf, cap=10_000.0):
    return StoreView(id, "battery", soc, cap, chg, dis, -5_000.0, 5_000.0, soc_min=0.05, soc_max=0.95,
                     discharge_efficiency=0.93, charge_efficiency=0.93, ramp_w_per_s=ramp, prev_w=prev)


def fly(soc=0.0, *, prev=0.0):
    return StoreView("fly", "flywheel", soc, 7_500.0, 50_000.0 if soc < 0.95 else 0.0,
                     50_000.0 if soc > 0.0 else 0.0, -50_000.0, 50_000.0, soc_min=0.0, soc_max=0.95,
                     discharge_efficiency=0.95, charge_efficiency=0.95, prev_w=prev, standing_loss_per_h=0.25)


def ups(soc=1.0):
    return StoreView("ups", "ups", soc, 5_000.0, 2_000.0, 3_000.0, -2_000.0, 3_000.0, soc_min=0.05, soc_max=1.0,
                     reserve_soc=0.8)


def pv(w):
    return PVView("pv", w, 8_000.0)


def load(w, *, critical=None, expected=None):
    return LoadView("load", w, w * 0.7 if critical is None else critical, w if expected is None else expected,
                    -12_000.0)


GRID = GridView(import_limit_w=10_000.0, export_limit_w=6_000.0)
FR = FrequencyArm(droop=0.004, deadband_hz=0.02, nominal_hz=50.0, p_ref_w=5_000.0)
FR_EMERGENCY = replace(FR, mode="emergency")


def inputs(*, stores=(bat(),), pvw=0.0, loadw=1_000.0, grid=GRID, cfg=ControlConfig(reserve_soc=0.3), dt=1.0,
           **cmd):
    return ArbiterInputs(t=T, dt=dt, stores=tuple(stores), pv=(pv(pvw),), loads=(load(loadw),), grid=grid,
                         commands=Commands(**cmd), config=cfg)


CASES = [
    # id, inputs, source, storage_w, {device: (power_w, source)}
    ("self-consumption covers the load", inputs(loadw=1_500, pvw=500), "idle", 1_000.0, {}),
    ("self-consumption stores the surplus", inputs(loadw=500, pvw=3_000), "idle", -2_500.0, {}),
    ("idle mode leaves storage at rest", inputs(cfg=ControlConfig(idle_mode="idle")), "idle", 0.0, {}),
    ("market schedule sets the net export", inputs(loadw=1_000, pvw=2_000, market_export_w=3_000), "market",
     2_000.0, {}),
    ("market import charges the battery", inputs(loadw=1_000, market_export_w=-2_000), "market", -1_000.0, {}),
    ("virtual battery adds to the market", inputs(market_export_w=0.0, virtual_battery_w=1_500), "virtual_battery",
     2_500.0, {}),
    ("autonomous ignores the market", inputs(loadw=1_000, market_export_w=4_000, autonomous=True), "autonomous",
     1_000.0, {}),
    ("under-frequency discharges (droop)", inputs(loadw=0.0, frequency_arm=FR, frequency_hz=49.82), "frequency",
     4_000.0, {}),
    ("over-frequency charges", inputs(loadw=0.0, frequency_arm=FR, frequency_hz=50.12), "frequency", -2_500.0, {}),
    ("inside the deadband nothing happens", inputs(loadw=0.0, frequency_arm=FR, frequency_hz=49.985), "idle", 0.0,
     {}),
    ("standby mode measures only", inputs(loadw=0.0, frequency_arm=replace(FR, mode="standby"), frequency_hz=49.8),
     "idle", 0.0, {}),
    ("expired arming does nothing", inputs(loadw=0.0, frequency_arm=replace(FR, until_ts=T - 1), frequency_hz=49.8),
     "idle", 0.0, {}),
    ("frequency beats the market", inputs(loadw=0.0, market_export_w=-3_000, frequency_arm=FR, frequency_hz=49.9),
     "frequency", -1_000.0, {}),
    ("reserve beats frequency response", inputs(stores=(bat(0.3),), loadw=0.0, frequency_arm=FR, frequency_hz=49.8),
     "reserve", 0.0, {}),
    ("emergency without opt-in keeps the reserve",
     inputs(stores=(bat(0.3),), loadw=0.0, frequency_arm=FR_EMERGENCY, frequency_hz=49.8), "reserve", 0.0, {}),
    ("emergency with opt-in goes below the reserve",
     inputs(stores=(bat(0.3),), loadw=0.0, frequency_arm=FR_EMERGENCY, frequency_hz=49.8,
            cfg=ControlConfig(reserve_soc=0.3, emergency_opt_in=True)), "frequency", 4_500.0, {}),
    ("reserve beats the market", inputs(stores=(bat(0.3),), market_export_w=2_000), "reserve", 0.0, {}),
    ("safety: charge limit at a full battery", inputs(stores=(bat(0.95, chg=0.0),), pvw=4_000, loadw=0.0), "safety",
     0.0, {}),
    ("safety: temperature stop", inputs(stores=(bat(0.6, chg=0.0, dis=0.0),), loadw=2_000), "safety", 0.0, {}),
    ("ramp limit caps the step", inputs(stores=(bat(ramp=1_000, prev=0.0),), loadw=3_000), "idle", 1_000.0,
     {"bat": (1_000.0, "safety")}),
    ("peak shaving at the import limit", inputs(loadw=12_000, market_export_w=-12_000), "local", 2_000.0, {}),
    ("power limit is safety, not reserve", inputs(loadw=8_000), "safety", 5_000.0, {}),
    ("export limit curtails PV", inputs(stores=(bat(0.95, chg=0.0),), pvw=8_000, loadw=1_000), "safety", 0.0,
     {"pv": (6_000.0 + 1_000.0, "safety")}),
    ("outage: islanded", inputs(loadw=2_000, grid=replace(GRID, outage=True), market_export_w=3_000), "local",
     2_000.0, {}),
    ("outage: shed when the battery cannot", inputs(stores=(bat(dis=1_000),), loadw=2_000,
                                                     grid=replace(GRID, outage=True)), "safety", 1_000.0,
     {"load": (-1_400.0, "local")}),
]


@pytest.mark.parametrize(("name", "inp", "source", "storage_w", "expect"), CASES, ids=[c[0] for c in CASES])
def test_table(name, inp, source, storage_w, expect):
    d = arbitrate(inp)
    assert d.source == source, d.trace
    assert d.storage_w == pytest.approx(storage_w, abs=1e-6)
    for dev, (power, src) in expect.items():
        assert d.setpoints[dev].power_w == pytest.approx(power, abs=1e-6)
        assert d.setpoints[dev].source == src
    for sp in d.setpoints.values():
        assert sp.reason  # every applied setpoint says why


def test_every_storage_setpoint_stays_within_the_envelope():
    # whatever the commands say, nothing leaves the device's limits
    for market in (-1e6, -5_000, 0, 5_000, 1e6):
        for f in (45.0, 49.0, 50.0, 51.0, 55.0):
            for soc in (0.05, 0.3, 0.6, 0.95):
                b = bat(soc, chg=0.0 if soc >= 0.95 else 5_000.0, dis=0.0 if soc <= 0.05 else 5_000.0)
                d = arbitrate(inputs(stores=(b,), market_export_w=market, frequency_arm=FR_EMERGENCY, frequency_hz=f,
                                     cfg=ControlConfig(reserve_soc=0.3, emergency_opt_in=True)))
                p = d.setpoints["bat"].power_w
                assert -b.max_charge_w - 1e-6 <= p <= b.max_discharge_w + 1e-6


def test_headroom_shared_in_proportion_and_no_node_drained_first():
    a, b = bat(0.9, id="a"), bat(0.4, id="b")
    d = arbitrate(inputs(stores=(a, b), loadw=3_000, cfg=ControlConfig(reserve_soc=0.3)))
    pa, pb = d.setpoints["a"].power_w, d.setpoints["b"].power_w
    assert pa + pb == pytest.approx(3_000)
    assert pa / pb == pytest.approx((0.9 - 0.3) / (0.4 - 0.3))  # by energy above the reserve


def test_trace_lists_each_layer_that_changed_the_value():
    d = arbitrate(inputs(stores=(bat(0.3),), loadw=0.0, market_export_w=1_000, frequency_arm=FR, frequency_hz=49.9))
    assert [s.source for s in d.trace] == ["idle", "market", "frequency", "reserve"]


def test_device_loop_intent():
    assert arbitrate(inputs(stores=(bat(0.2),))).intent.kind == "request"
    assert arbitrate(inputs(stores=(bat(0.9),), loadw=100)).intent.kind == "contribute"
    assert arbitrate(inputs(stores=(bat(0.9),), loadw=3_000)).intent.kind == "hold"
    assert arbitrate(inputs(stores=(bat(0.5),))).intent.kind == "hold"


# ------------------------------------------------------------------ cycle by cycle


def test_cycles_frequency_step_then_recovery():
    steps = [  # (frequency, expected storage power, source)
        (50.00, 0.0, "idle"),
        (49.80, 4_500.0, "frequency"),
        (49.90, 2_000.0, "frequency"),
        (49.99, 0.0, "idle"),
    ]
    prev = 0.0
    for f, want, src in steps:
        d = arbitrate(inputs(stores=(bat(prev=prev),), loadw=0.0, frequency_arm=FR, frequency_hz=f))
        assert (d.storage_w, d.source) == (pytest.approx(want), src)
        prev = d.storage_w


def test_cycles_ramp_limited_approach():
    prev, seen = 0.0, []
    for _ in range(5):
        d = arbitrate(inputs(stores=(bat(ramp=1_000, prev=prev),), loadw=3_500, dt=1.0))
        prev = d.setpoints["bat"].power_w
        seen.append(prev)
    assert seen == [1_000.0, 2_000.0, 3_000.0, 3_500.0, 3_500.0]


def test_cycles_flywheel_buffers_spike_and_prefers_late_precharge():
    cfg = ControlConfig(reserve_soc=0.3, flywheel_spike_w=500)
    spike = ((T + 120, T + 180, 20_000.0),)
    far = arbitrate(ArbiterInputs(t=T - 3_600, dt=1.0, stores=(bat(), fly(0.0)), loads=(load(1_000),), grid=GRID,
                                  commands=Commands(spikes=spike), config=cfg))
    assert far.setpoints["fly"].power_w == 0.0  # an hour ahead: standing losses make charging wasteful
    early = arbitrate(ArbiterInputs(t=T + 60, dt=1.0, stores=(bat(), fly(0.0)), loads=(load(1_000),), grid=GRID,
                                    commands=Commands(spikes=spike), config=cfg))
    assert early.setpoints["fly"].power_w == 0.0 and "deferred" in early.setpoints["fly"].reason
    near = arbitrate(ArbiterInputs(t=T + 100, dt=1.0, stores=(bat(), fly(0.0)), loads=(load(1_000),), grid=GRID,
                                   commands=Commands(spikes=spike), config=cfg))
    assert near.setpoints["fly"].power_w < 0 and near.setpoints["fly"].source == "local"
    during = arbitrate(ArbiterInputs(t=T + 130, dt=1.0, stores=(bat(), fly(0.5)),
                                     loads=(load(21_000, expected=1_000),), grid=GRID, config=cfg))
    assert during.setpoints["fly"].power_w == pytest.approx(19_500.0)
    # the battery and the grid only see the expected load plus the spike threshold
    assert during.setpoints["bat"].power_w == pytest.approx(1_500.0)


def test_cycles_outage_flywheel_bridges_until_ups_takes_over():
    out = replace(GRID, outage=True)
    cfg = ControlConfig(reserve_soc=0.3)
    # UPS not yet carrying (takeover delay: its telemetry offers no discharge), battery small
    ups_wait = replace(ups(), max_discharge_w=0.0)
    d1 = arbitrate(ArbiterInputs(t=T, dt=0.01, stores=(bat(dis=1_000), fly(0.8), ups_wait),
                                 loads=(load(4_000, critical=4_000),), grid=out, config=cfg))
    assert d1.setpoints["fly"].power_w == pytest.approx(3_000.0) and d1.unserved_w == 0.0
    d2 = arbitrate(ArbiterInputs(t=T + 3, dt=0.01, stores=(bat(dis=1_000), fly(0.0), ups()),
                                 loads=(load(4_000, critical=4_000),), grid=out, config=cfg))
    assert d2.setpoints["ups"].power_w == pytest.approx(3_000.0) and d2.setpoints["ups"].source == "local"


def test_reserve_trigger_needs_predicted_and_actual_demand():
    grid = replace(GRID, import_limit_w=3_000.0)
    cfg = ControlConfig(reserve_soc=0.3)
    stores = (bat(0.3), ups())
    # actual demand above primary (grid 3 kW) but predicted below: the reserve stays idle
    d = arbitrate(ArbiterInputs(t=T, dt=1.0, stores=stores, loads=(load(5_000, critical=5_000, expected=2_000),),
                                grid=grid, commands=Commands(demand_upper_w=2_500.0), config=cfg))
    assert d.setpoints["ups"].power_w <= 0.0
    d = arbitrate(ArbiterInputs(t=T, dt=1.0, stores=stores, loads=(load(5_000, critical=5_000),), grid=grid,
                                commands=Commands(demand_upper_w=5_500.0), config=cfg))
    assert d.setpoints["ups"].power_w == pytest.approx(2_000.0)
    assert "reserve trigger" in d.setpoints["ups"].reason
    # the UPS never goes below its own reserve outside an outage
    d = arbitrate(ArbiterInputs(t=T, dt=1.0, stores=(bat(0.3), ups(0.8)), loads=(load(5_000, critical=5_000),),
                                grid=grid, commands=Commands(demand_upper_w=5_500.0), config=cfg))
    assert d.setpoints["ups"].power_w <= 0.0


def test_power_of_devices_it_may_not_drive_is_taken_as_given():
    # a read-only battery discharging 1 kW covers part of the load: ours covers only the rest
    inp = replace(inputs(loadw=3_000), other_w=1_000.0)
    d = arbitrate(inp)
    assert d.storage_w == pytest.approx(2_000.0)
    assert d.net_export_w == pytest.approx(0.0)
