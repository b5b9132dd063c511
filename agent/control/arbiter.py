"""The arbiter: the one place where setpoints from every source meet (docs/architecture.md §4).

``arbitrate(inputs) -> Decision`` is a pure function of one tick's inputs. It builds the site's
bulk-storage power bottom-up, each layer free to override the ones below it, then applies the
owner's reserve and the safety envelope last so they always win::

    6 idle / self-consumption (or autonomous self-consumption when the link is down)
    5 market schedule (target net export)  +  virtual-battery request
    4 local site control: islanding in an outage, peak shaving at the import limit,
      flywheel buffering / pre-charge / outage bridging, reserve trigger (UPS), load shedding
    3 grid frequency response (droop + deadband, as armed)
    2 owner's backup reserve (per device floors; emergency opt-in lets only the frequency
      response go below it; an outage lets the owner's own load use it)
    1 safety envelope (power, SoC, temperature, ramp per device; grid import/export limits)

Every setpoint carries the source that decided it and why; ``Decision.trace`` lists each layer
that changed the site's storage power.

Sign: device sign everywhere (+ = delivering to the bus). ``net export`` = sum of all device
powers except the grid's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from agent.config import ControlSection, DeviceSectionConfig
from agent.control.allocate import allocate as _allocate
from agent.control.device_loop import Intent, device_loop
from agent.control.flywheel import plan_flywheels, sustainable_w
from agent.control.flywheel import precharge_lead_s as _lead_s
from agent.control.frequency import FrequencyArm, response_w
from agent.control.reserve import ReserveState, reserve_trigger
from agent.control.safety import clamp_storage

__all__ = [
    "PRIORITY",
    "AppliedSetpoint",
    "ArbiterInputs",
    "Commands",
    "ControlConfig",
    "Decision",
    "GridView",
    "LoadView",
    "PVView",
    "StoreView",
    "TraceStep",
    "arbitrate",
]

PRIORITY = {
    "safety": 1,
    "reserve": 2,
    "frequency": 3,
    "local": 4,
    "market": 5,
    "virtual_battery": 5,
    "autonomous": 6,
    "idle": 6,
}

_EPS = 1e-6


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class StoreView:
    """A storage device as the arbiter sees it. Powers AC at the bus, >= 0 availabilities."""

    device_id: str
    kind: str  # "battery" | "ups" | "flywheel"
    soc: float
    capacity_wh: float
    max_charge_w: float
    max_discharge_w: float
    min_w: float
    max_w: float
    soc_min: float = 0.0
    soc_max: float = 1.0
    discharge_efficiency: float = 1.0
    charge_efficiency: float = 1.0
    ramp_w_per_s: float = math.inf
    prev_w: float = 0.0
    reserve_soc: float | None = None  # a device's own reserve (UPS)
    standing_loss_per_h: float | None = None  # flywheel


@dataclass(frozen=True, slots=True)
class PVView:
    device_id: str
    available_w: float
    max_w: float


@dataclass(frozen=True, slots=True)
class LoadView:
    device_id: str
    demand_w: float  # >= 0
    critical_w: float  # >= 0, never shed
    expected_w: float  # >= 0, mean demand now (profile/forecast)
    min_w: float  # most negative setpoint (= no shedding)


@dataclass(frozen=True, slots=True)
class GridView:
    import_limit_w: float
    export_limit_w: float
    outage: bool = False
    outage_age_s: float = 0.0


_OWNER = ControlSection.model_fields  # the owner's choices: defaults written once, in the config model


@dataclass(frozen=True, slots=True)
class ControlConfig:
    reserve_soc: float = DeviceSectionConfig.model_fields["reserve_soc"].default
    emergency_opt_in: bool = _OWNER["emergency_opt_in"].default
    idle_mode: str = _OWNER["idle_mode"].default  # or "idle"
    low_threshold: float = _OWNER["low_threshold"].default
    high_threshold: float = _OWNER["high_threshold"].default
    low_use_w: float = _OWNER["low_use_w"].default
    flywheel_spike_w: float = _OWNER["flywheel_spike_w"].default  # load above expected by more than this is a spike
    flywheel_max_precharge_loss: float = 0.05  # lose at most 5 % of a pre-charge to standing losses
    ups_recharge_w: float | None = None  # None: the UPS's own charge limit
    reserve_hold_s: float = 60.0  # a started reserve runs at least this long after the need went
    flywheel_sustain_s: float = 60.0  # flywheel power counts as available if held this long


@dataclass(frozen=True, slots=True)
class Commands:
    market_export_w: float | None = None  # committed target net export now
    market_reason: str = ""
    virtual_battery_w: float = 0.0  # extra storage power asked by the coordinator (virtual battery, docs/architecture.md §1)
    frequency_arm: FrequencyArm | None = None
    frequency_hz: float | None = None
    autonomous: bool = False
    spikes: tuple[tuple[float, float, float], ...] = ()  # predicted (start, end, extra W)
    demand_upper_w: float | None = None  # forecast upper bound of demand now (reserve trigger, docs/architecture.md §1)
    shave_above_w: float | None = None  # planner: site import above this is a peak the flywheels cover
    flywheel_readiness_soc: float | None = None  # planner: recharge flywheels to this when safe
    flywheel_charge_below_w: float | None = None  # planner: flywheels recharge only while import is below this
    reserve: ReserveState | None = None  # the reserve trigger's state from the last tick


@dataclass(frozen=True, slots=True)
class ArbiterInputs:
    t: float
    dt: float  # seconds since the last tick (for ramps and reserve approach)
    stores: tuple[StoreView, ...] = ()
    pv: tuple[PVView, ...] = ()
    loads: tuple[LoadView, ...] = ()
    grid: GridView | None = None
    commands: Commands = Commands()
    config: ControlConfig = ControlConfig()
    other_w: float = 0.0  # measured power of devices the agent may not control (read-only), device sign


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class AppliedSetpoint:
    device_id: str
    power_w: float
    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class TraceStep:
    source: str
    before_w: float
    after_w: float
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    t: float
    source: str  # the layer that decided the site's storage power
    reason: str
    storage_w: float  # total bulk (battery) storage power
    setpoints: dict[str, AppliedSetpoint]
    trace: tuple[TraceStep, ...]
    net_export_w: float  # expected net export with these setpoints
    intent: Intent
    unserved_w: float = 0.0
    alarms: tuple[str, ...] = field(default_factory=tuple)
    reserve: ReserveState = ReserveState()

    def as_dict(self) -> dict[str, object]:
        return {
            "t": self.t,
            "source": self.source,
            "reason": self.reason,
            "storage_w": self.storage_w,
            "net_export_w": self.net_export_w,
            "unserved_w": self.unserved_w,
            "alarms": list(self.alarms),
            "reserve": {"active": self.reserve.active, "activations": self.reserve.activations,
                        "reason": self.reserve.reason},
            "intent": {"kind": self.intent.kind, "energy_wh": self.intent.energy_wh, "reason": self.intent.reason},
            "setpoints": {k: {"power_w": v.power_w, "source": v.source, "reason": v.reason}
                          for k, v in self.setpoints.items()},
            "trace": [{"source": s.source, "before_w": s.before_w, "after_w": s.after_w, "reason": s.reason}
                      for s in self.trace],
        }


# --------------------------------------------------------------------------- helpers


class _Track:
    """The site's bulk storage power as the layers pass it up."""

    __slots__ = ("value", "steps")

    def __init__(self, value: float, source: str, reason: str) -> None:
        self.value = value
        self.steps: list[TraceStep] = [TraceStep(source, 0.0, value, reason)]

    def set(self, value: float, source: str, reason: str, *, force: bool = False) -> None:
        if force or abs(value - self.value) > _EPS:
            self.steps.append(TraceStep(source, self.value, value, reason))
            self.value = value

    @property
    def winner(self) -> TraceStep:
        return self.steps[-1]


def _floor(s: StoreView, cfg: ControlConfig, outage: bool) -> float:
    """Lowest SoC a store may be discharged to under normal rules (level 2)."""
    if outage:
        return s.soc_min
    if s.kind == "ups":
        return max(s.soc_min, s.reserve_soc if s.reserve_soc is not None else 1.0)
    return max(s.soc_min, cfg.reserve_soc)


def _discharge_cap(s: StoreView, floor: float, dt: float) -> float:
    """Largest discharge (W AC) that keeps ``s`` at or above ``floor`` over the coming tick."""
    above_wh = (s.soc - floor) * s.capacity_wh
    if above_wh <= 1e-9:
        return 0.0
    hours = max(dt, 1e-3) / 3600.0
    return max(0.0, min(s.max_discharge_w, s.max_w, above_wh * s.discharge_efficiency / hours))


def _charge_cap(s: StoreView) -> float:
    return max(0.0, min(s.max_charge_w, -s.min_w))


# --------------------------------------------------------------------------- the arbiter


def arbitrate(inp: ArbiterInputs) -> Decision:
    cfg, cmd, t, dt = inp.config, inp.commands, inp.t, inp.dt
    grid = inp.grid
    outage = grid is not None and grid.outage
    alarms: list[str] = []

    bulk = [s for s in inp.stores if s.kind == "battery"]
    ups = [s for s in inp.stores if s.kind == "ups"]
    fly = [s for s in inp.stores if s.kind == "flywheel"]

    pv_avail = sum(p.available_w for p in inp.pv)
    demand = sum(ld.demand_w for ld in inp.loads)
    expected = sum(ld.expected_w for ld in inp.loads)
    n0 = pv_avail - demand + inp.other_w  # net export with storage idle, no curtailment, no shedding
    n0_raw = n0

    floors = [_floor(s, cfg, outage) for s in bulk]
    dis_caps = [_discharge_cap(s, f, dt) for s, f in zip(bulk, floors, strict=True)]
    chg_caps = [_charge_cap(s) for s in bulk]
    d_res = sum(dis_caps)
    d_emerg = sum(_discharge_cap(s, s.soc_min, dt) for s in bulk)
    d_power = sum(max(0.0, min(s.max_discharge_w, s.max_w)) for s in bulk)
    c_max = sum(chg_caps)

    # flywheel plan (level 4, see agent/control/flywheel.py): share a peak, pre-charge late
    # before a predicted one, keep ready. The layers below see the site net of it, so the
    # batteries and the grid do not see the peak. The peak is import above the planner's
    # threshold when it gives one, else load above its expected level by flywheel_spike_w.
    import_now = -n0
    limit = grid.import_limit_w if grid is not None and not outage else math.inf
    if outage:
        excess, headroom = 0.0, max(0.0, -import_now)  # the deficit is bridged below; charge from PV only
    elif cmd.shave_above_w is not None and math.isfinite(cmd.shave_above_w):
        threshold = min(cmd.shave_above_w, limit)
        ceiling = threshold
        if cmd.flywheel_charge_below_w is not None and math.isfinite(cmd.flywheel_charge_below_w):
            ceiling = min(threshold, cmd.flywheel_charge_below_w)
        excess, headroom = max(0.0, import_now - threshold), ceiling - import_now
    else:
        excess = max(0.0, demand - expected - cfg.flywheel_spike_w) if inp.loads else 0.0
        headroom = limit - import_now
    plans = plan_flywheels(fly, t=t, dt=dt, excess_w=excess, headroom_w=headroom, spikes=cmd.spikes,
                           readiness_soc=cmd.flywheel_readiness_soc,
                           max_precharge_loss=cfg.flywheel_max_precharge_loss)
    fly_w: dict[str, tuple[float, tuple[str, str]]] = {s.device_id: p for s, p in zip(fly, plans, strict=True)}
    n0 += sum(min(max(w, -_charge_cap(s)), min(s.max_discharge_w, s.max_w))
              for s, (w, _src) in ((f, fly_w[f.device_id]) for f in fly))

    # ---- 6: idle / self-consumption ------------------------------------------------------
    if cmd.autonomous:
        track = _Track(-n0, "autonomous", "coordinator link down: autonomous self-consumption (cover load - pv)")
    elif cfg.idle_mode == "self_consumption":
        track = _Track(-n0, "idle", "self-consumption: storage covers load - pv")
    else:
        track = _Track(0.0, "idle", "idle: storage at rest")

    # ---- 5: market schedule, virtual battery ----------------------------------------------
    if not cmd.autonomous and not outage:
        if cmd.market_export_w is not None:
            track.set(cmd.market_export_w - n0, "market",
                      cmd.market_reason or f"committed net export {cmd.market_export_w:.0f} W")
        if cmd.virtual_battery_w:
            track.set(track.value + cmd.virtual_battery_w, "virtual_battery",
                      f"virtual-battery request {cmd.virtual_battery_w:+.0f} W")

    # ---- 4: local site control -----------------------------------------------------------
    if outage:
        track.set(-n0, "local", "grid outage: islanded, storage balances the site", force=True)
    elif grid is not None:
        net = n0 + track.value
        if net < -grid.import_limit_w:
            track.set(-grid.import_limit_w - n0, "local",
                      f"peak shaving: import {-net:.0f} W above connection limit {grid.import_limit_w:.0f} W")

    # ---- 3: grid frequency response -------------------------------------------------------
    fr_w = 0.0
    arm = cmd.frequency_arm
    if arm is not None and arm.active(t) and cmd.frequency_hz is not None and not outage:
        fr_w = response_w(arm, cmd.frequency_hz)
        if fr_w:
            track.set(track.value + fr_w, "frequency",
                      f"frequency {cmd.frequency_hz:.3f} Hz: droop {arm.droop:g}, deadband {arm.deadband_hz:g} Hz, "
                      f"response {fr_w:+.0f} W ({arm.mode})")

    # ---- 2: owner's backup reserve ---------------------------------------------------------
    emergency = (arm is not None and arm.mode == "emergency" and cfg.emergency_opt_in and fr_w > 0)
    p = track.value
    use_emergency = False
    if p > d_res + _EPS:
        if emergency:
            base = p - fr_w
            allowed = min(d_emerg, min(max(base, 0.0), d_res) + fr_w) if base >= 0 else min(d_emerg, p)
            allowed = max(allowed, min(p, d_res))
            use_emergency = allowed > d_res + _EPS
            if allowed < p - _EPS:
                track.set(allowed, "reserve", "emergency response limited by SoC floor")
        elif d_res >= d_power - _EPS:
            pass  # not the reserve: the power limit binds (level 1 below)
        elif outage:
            track.set(d_res, "reserve", "outage: storage at its SoC floor")
        else:
            reserve = cfg.reserve_soc
            track.set(d_res, "reserve", f"owner's backup reserve {reserve:.0%}: discharge limited to {d_res:.0f} W")

    # ---- 1: safety envelope (totals) -------------------------------------------------------
    total_cap = d_emerg if use_emergency else d_res
    if track.value > total_cap + _EPS:
        track.set(total_cap, "safety", f"storage discharge limit {total_cap:.0f} W (power/SoC/temperature)")
    if track.value < -c_max - _EPS:
        track.set(-c_max, "safety", f"storage charge limit {c_max:.0f} W (power/SoC/temperature)")

    # allocate bulk power (SoC balancing: weights by energy above floor / room below ceiling)
    p = track.value
    if p >= 0:
        if use_emergency:
            first = _allocate(min(p, d_res), bulk, dis_caps,
                              [(s.soc - f) * s.capacity_wh for s, f in zip(bulk, floors, strict=True)])
            rest_caps = [_discharge_cap(s, s.soc_min, dt) - a for s, a in zip(bulk, first, strict=True)]
            second = _allocate(p - sum(first), bulk, rest_caps, [(s.soc - s.soc_min) * s.capacity_wh for s in bulk])
            shares = [a + b for a, b in zip(first, second, strict=True)]
        else:
            shares = _allocate(p, bulk, dis_caps,
                               [(s.soc - f) * s.capacity_wh for s, f in zip(bulk, floors, strict=True)])
    else:
        shares = _allocate(p, bulk, chg_caps, [(s.soc_max - s.soc) * s.capacity_wh for s in bulk])

    win = track.winner
    setpoints: dict[str, AppliedSetpoint] = {}
    for s, share in zip(bulk, shares, strict=True):
        v, why = clamp_storage(share, max_charge_w=s.max_charge_w, max_discharge_w=s.max_discharge_w,
                               min_w=s.min_w, max_w=s.max_w, prev_w=s.prev_w, ramp_w_per_s=s.ramp_w_per_s, dt=dt)
        if why:
            setpoints[s.device_id] = AppliedSetpoint(s.device_id, v, "safety", why)
        else:
            setpoints[s.device_id] = AppliedSetpoint(s.device_id, v, win.source, win.reason)
    bulk_w = sum(sp.power_w for sp in setpoints.values())

    # flywheels (their own plan, then the envelope)
    for s in fly:
        want, why_src = fly_w[s.device_id]
        _add_store(setpoints, s, want, why_src, dt)

    # deficit / surplus the bulk storage did not cover --------------------------------------
    fly_total = sum(setpoints[s.device_id].power_w for s in fly)
    net = n0_raw + bulk_w + fly_total
    deficit = 0.0
    if outage:
        deficit = max(0.0, -net)
    elif grid is not None and net < -grid.import_limit_w:
        deficit = -grid.import_limit_w - net

    # what is left: in an outage the UPS carries it as soon as it can and the flywheel bridges
    # until then; on the grid the flywheel goes first and the reserve supply (UPS) is engaged
    # only when predicted AND actual demand exceed primary + flywheel capacity (reserve trigger, docs/architecture.md §1)
    primary = pv_avail + d_res + (0.0 if outage or grid is None else grid.import_limit_w)
    # what the flywheels can still give (their energy counted: an empty one gives nothing)
    fly_cap = sum(sustainable_w(s, cfg.flywheel_sustain_s) for s in fly)
    if cmd.reserve is None:  # stateless caller: no hold, prediction from the forecast or the profile
        predicted = cmd.demand_upper_w if cmd.demand_upper_w is not None else expected
        trigger = (not outage and demand > primary + fly_cap and predicted > primary + fly_cap)
        reserve_state = ReserveState(trigger, t if trigger else None, None, int(trigger),
                                     "reserve started" if trigger else "reserve off")
    elif outage:
        reserve_state = replace(cmd.reserve, reason="outage: the UPS carries the load")
        trigger = False
        predicted = cmd.demand_upper_w if cmd.demand_upper_w is not None else demand
    else:
        reserve_state = reserve_trigger(cmd.reserve, t, actual_w=demand, predicted_w=cmd.demand_upper_w,
                                        threshold_w=primary + fly_cap, hold_s=cfg.reserve_hold_s,
                                        confirm_s=cfg.flywheel_sustain_s)
        trigger = reserve_state.active
        predicted = cmd.demand_upper_w if cmd.demand_upper_w is not None else demand

    def bridge(deficit: float) -> float:
        for s in fly:
            if deficit <= _EPS:
                break
            cur = setpoints[s.device_id].power_w
            extra = min(deficit, max(0.0, min(s.max_discharge_w, s.max_w) - cur))
            if extra > _EPS:
                reason = ("outage: flywheel bridges until the UPS takes over" if outage
                          else "flywheel covers demand above the connection limit")
                _add_store(setpoints, s, cur + extra, ("local", reason), dt)
                deficit -= setpoints[s.device_id].power_w - cur
        return max(0.0, deficit)

    def reserve_supply(deficit: float) -> float:
        for s in ups:
            cap = _discharge_cap(s, _floor(s, cfg, outage), dt)
            if outage and deficit > _EPS:
                want = min(deficit, cap)
                src = ("local", "outage: UPS carries the load")
            elif trigger:
                want = min(deficit, cap)
                src = ("local", f"reserve trigger: demand {demand:.0f} W (predicted {predicted:.0f} W) above "
                                f"primary {primary:.0f} W + flywheel {fly_cap:.0f} W" if deficit > _EPS
                                else f"reserve trigger held: {reserve_state.reason}")
            elif not outage and s.soc < s.soc_max - 0.01:
                rate = cfg.ups_recharge_w if cfg.ups_recharge_w is not None else s.max_charge_w
                want = -min(rate, _charge_cap(s))
                src = ("local", "UPS recharge while the grid is available")
            else:
                want = 0.0
                src = ("idle", "UPS standing by")
            _add_store(setpoints, s, want, src, dt)
            if want > 0:
                deficit = max(0.0, deficit - setpoints[s.device_id].power_w)
        return deficit

    if outage:
        deficit = bridge(reserve_supply(deficit))
    else:
        deficit = reserve_supply(bridge(deficit))

    # load shedding (level 4) for a remaining deficit; PV curtailment / export limit (level 1)
    ups_total = sum(setpoints[s.device_id].power_w for s in ups)
    net = n0_raw + bulk_w + sum(setpoints[s.device_id].power_w for s in fly) + ups_total
    if outage:
        deficit = max(0.0, -net)
    elif grid is not None:
        deficit = max(0.0, -grid.import_limit_w - net)
    else:
        deficit = 0.0
    shed_total = 0.0
    for ld in sorted(inp.loads, key=lambda x: x.critical_w - x.demand_w):  # most sheddable first
        sheddable = max(0.0, ld.demand_w - ld.critical_w)
        shed = min(deficit, sheddable)
        if shed > _EPS:
            deficit -= shed
            shed_total += shed
            why = "outage" if outage else "import above the connection limit"
            setpoints[ld.device_id] = AppliedSetpoint(ld.device_id, -(ld.demand_w - shed), "local",
                                                      f"load shedding {shed:.0f} W: {why}")
        else:
            setpoints[ld.device_id] = AppliedSetpoint(ld.device_id, ld.min_w, "idle", "no shedding")
    unserved = deficit if deficit > _EPS else 0.0
    if unserved:
        alarms.append(f"unserved demand {unserved:.0f} W ({'outage' if outage else 'import limit'})")
    net += shed_total

    surplus_limit = 0.0 if outage else (grid.export_limit_w if grid is not None else math.inf)
    excess = max(0.0, net - surplus_limit)
    for pv in inp.pv:
        cut = min(excess, pv.available_w)
        if cut > _EPS:
            excess -= cut
            net -= cut
            why = "outage: no export possible" if outage else f"export limit {surplus_limit:.0f} W"
            setpoints[pv.device_id] = AppliedSetpoint(pv.device_id, max(0.0, pv.available_w - cut), "safety",
                                                      f"PV curtailed by {cut:.0f} W: {why}")
        else:
            setpoints[pv.device_id] = AppliedSetpoint(pv.device_id, pv.max_w, "idle", "no curtailment")
    if excess > _EPS:
        alarms.append(f"export {excess:.0f} W above the limit with no PV left to curtail")

    intent = _intent(bulk, demand, pv_avail, cfg)
    return Decision(t=t, source=win.source, reason=win.reason, storage_w=bulk_w, setpoints=setpoints,
                    trace=tuple(track.steps), net_export_w=net, intent=intent, unserved_w=unserved,
                    alarms=tuple(alarms), reserve=reserve_state)


def _add_store(setpoints: dict[str, AppliedSetpoint], s: StoreView, want: float, src: tuple[str, str],
               dt: float) -> None:
    v, why = clamp_storage(want, max_charge_w=s.max_charge_w, max_discharge_w=s.max_discharge_w,
                           min_w=s.min_w, max_w=s.max_w, prev_w=s.prev_w, ramp_w_per_s=s.ramp_w_per_s, dt=dt)
    if why:
        setpoints[s.device_id] = AppliedSetpoint(s.device_id, v, "safety", why)
    else:
        setpoints[s.device_id] = AppliedSetpoint(s.device_id, v, src[0], src[1])


def precharge_lead_s(s: StoreView, cfg: ControlConfig) -> float:
    """Longest time ahead of a spike worth charging flywheel ``s`` (see agent/control/flywheel.py)."""
    return _lead_s(s.standing_loss_per_h, cfg.flywheel_max_precharge_loss)


def _intent(bulk: list[StoreView], demand: float, pv: float, cfg: ControlConfig) -> Intent:
    cap = sum(s.capacity_wh for s in bulk)
    soc = sum(s.soc * s.capacity_wh for s in bulk) / cap if cap > 0 else None
    return device_loop(soc, cap, demand, pv, low_threshold=cfg.low_threshold,
                       high_threshold=cfg.high_threshold, low_use_w=cfg.low_use_w)
