"""A site: its devices' drivers, the control loop over them, and the grid-connection meter.

The agent runtime owns the process, the link and the clock's pace; it drives a :class:`Site`::

    site = Site.from_config(cfg["devices"], clock, seed=7, reserve_soc=0.3)
    await site.connect()
    state = await site.tick()       # read all drivers, arbitrate, apply setpoints, meter
    site.set_market_schedule(start_ts, end_ts, export_w)
    exported_wh, imported_wh = site.meter_window(start_ts, end_ts)

Every tick happens at ``clock.now()``; integration uses clock times, never the number of calls,
so the same site gives the same energies at a 10 ms or a 60 s tick (up to the tick's sampling).
Units: W, Wh, SoC 0..1, seconds (clock epoch). Device sign (+ = delivering to the bus);
``net_export_w > 0`` = the site exports to the grid (docs/architecture.md §6).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from agent.config import AgentConfig, DeviceSectionConfig
from agent.control.arbiter import (
    ArbiterInputs,
    Commands,
    ControlConfig,
    Decision,
    GridView,
    LoadView,
    PVView,
    StoreView,
    arbitrate,
)
from agent.control.device_loop import Intent
from agent.control.frequency import FREQUENCY_MODES, FrequencyArm, response_w
from agent.control.reserve import ReserveState
from agent.control_log import ControlLog
from agent.devices.meter import MeterLog
from agent.devices.spec import AnyDevice, BatteryConfig, DeviceConfigError, GridConfig
from agent.drivers.base import DeviceKind, Driver, DriverError, ProbeResult, Setpoint, Telemetry
from agent.drivers.build import build_drivers
from gridswarm.clock import Clock

logger = logging.getLogger(__name__)

__all__ = ["Schedule", "Site", "SiteConfigError", "SiteState"]

# A market schedule is aimed this far past its committed energy (Wh, in its direction): the
# signed reading is rounded to the Wh, and a reading below the fill is a shortfall on chain.
TRACK_MARGIN_WH = 1.0

SiteConfigError = DeviceConfigError
NOMINAL_HZ: float = GridConfig.model_fields["nominal_hz"].default  # when no driver knows the grid's


@dataclass(frozen=True, slots=True)
class Schedule:
    """A committed power target over ``[start_ts, end_ts)``; ``power_w`` in W. ``delivered_wh``
    is net export (Wh) delivered in the window before this process metered it (a restart)."""

    start_ts: float
    end_ts: float
    power_w: float
    reason: str = ""
    delivered_wh: float = 0.0

    @property
    def energy_wh(self) -> float:
        """The committed net export over the whole window (Wh)."""
        return self.power_w * (self.end_ts - self.start_ts) / 3600.0


@dataclass(frozen=True, slots=True)
class SiteState:
    """What one tick saw and did."""

    ts: float
    net_export_w: float  # + = exporting to the grid (docs/architecture.md §6), for the coming tick
    soc: float | None  # capacity-weighted SoC of the site's batteries (None without any)
    devices: dict[str, Telemetry]  # telemetry read this tick, per device id
    decision: Decision  # which source won and why, per device setpoint
    applied: dict[str, float]  # power each driver accepted this tick (W), for devices written
    errors: dict[str, str] = field(default_factory=dict)  # device id -> error this tick
    outage: bool = False
    autonomous: bool = False
    frequency_hz: float | None = None

    @property
    def intent(self) -> Intent:
        return self.decision.intent

    def as_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "net_export_w": self.net_export_w,
            "soc": self.soc,
            "outage": self.outage,
            "autonomous": self.autonomous,
            "frequency_hz": self.frequency_hz,
            "devices": {k: v.as_dict() for k, v in self.devices.items()},
            "decision": self.decision.as_dict(),
            "applied": dict(self.applied),
            "errors": dict(self.errors),
        }


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: must be a finite number, got {value!r}")
    return float(value)


def _fraction(name: str, value: Any) -> float:
    v = _finite(name, value)
    if not 0.0 <= v <= 1.0:
        raise DeviceConfigError(name, f"must be within [0, 1], got {v:g}")
    return v


def _frequency_delivered(decision: Decision) -> float:
    """The storage power the frequency layer added, as it survived the reserve and the limits
    (W, device sign; 0 when the droop asked for nothing)."""
    step = next((s for s in decision.trace if s.source == "frequency"), None)
    if step is None:
        return 0.0
    asked = step.after_w - step.before_w
    got = decision.storage_w - step.before_w
    return max(0.0, min(asked, got)) if asked >= 0 else min(0.0, max(asked, got))


class Site:
    """The devices of one site and their control loop (see the module docstring)."""

    def __init__(self, drivers: Sequence[Driver], clock: Clock, *, control: ControlConfig | None = None,
                 meter_resolution_s: float = 1.0, meter_retention_s: float = 26 * 3600.0,
                 forecast_step_s: float = 300.0) -> None:
        ids = [d.device_id for d in drivers]
        if len(set(ids)) != len(ids):
            raise DeviceConfigError("devices", f"duplicate device ids in {ids}")
        self.clock = clock
        self.drivers: dict[str, Driver] = {d.device_id: d for d in drivers}
        self.control = control or ControlConfig()
        self.meter = MeterLog(meter_resolution_s, meter_retention_s)
        self.forecast_step_s = float(forecast_step_s)
        self._grid = next((d for d in drivers if d.kind is DeviceKind.GRID), None)
        self._concurrent = any(d.concurrent_reads for d in drivers)
        self._order = list(drivers)
        self._schedules: list[Schedule] = []
        self._market_last: tuple[Schedule, float] | None = None  # the market target at the last tick
        self._vb: list[Schedule] = []
        self._spikes: list[tuple[float, float, float]] = []
        self._demand_upper: tuple[float, float, float] | None = None  # (start, end, upper W)
        self._fly_plan: tuple[float, float | None, float | None, float | None] | None = None  # (until, shave above W, readiness, charge below W)
        self._reserve = ReserveState()
        self._arm: FrequencyArm | None = None
        self._frequency_hz: float | None = None
        self._autonomous = False
        self._applied: dict[str, float] = {}
        self._last_t: float | None = None
        self._last_dt = 1.0
        self._last_state: SiteState | None = None
        self._last_tel: dict[str, Telemetry] = {}
        self._grid_counters: tuple[float, float] | None = None
        self._connected = False
        self.control_log = ControlLog()  # which devices the site controls, and why not (logged once)
        self.ticks = 0
        self._write_lock = asyncio.Lock()  # the control tick and the fast frequency path both write
        self._fr_written_w = 0.0  # droop response the storage setpoints carry now (W)
        self.frequency_delivered_w = 0.0  # of it, what the setpoints deliver after reserve and limits

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, devices: Sequence[Mapping[str, Any] | AnyDevice], clock: Clock, seed: int,
                    reserve_soc: float, *, utc_offset_h: float | None = None, meter_resolution_s: float = 1.0,
                    meter_retention_s: float = 26 * 3600.0,
                    driver_factory: Callable[[AnyDevice], Driver] | None = None, **control: Any) -> Site:
        """Build the site from a ``devices:`` list (mappings or validated models) and the owner's
        control choices (the fields of :class:`agent.config.ControlSection`, with its defaults).

        The config models validate (:mod:`agent.devices.spec`, :mod:`agent.config`); errors name
        the bad field: ``devices[1].capacity_wh: must be > 0, got -5``.
        """
        try:
            section = DeviceSectionConfig.model_validate(
                {"seed": seed, "reserve_soc": reserve_soc, "control": control, "devices": list(devices)})
        except ValidationError as exc:
            raise DeviceConfigError.from_validation(exc) from exc
        return cls.from_section(section, clock, utc_offset_h=utc_offset_h, meter_resolution_s=meter_resolution_s,
                                meter_retention_s=meter_retention_s, driver_factory=driver_factory)

    @classmethod
    def from_section(cls, section: DeviceSectionConfig | AgentConfig, clock: Clock, *, utc_offset_h: float | None = None,
                     meter_resolution_s: float = 1.0, meter_retention_s: float = 26 * 3600.0,
                     driver_factory: Callable[[AnyDevice], Driver] | None = None) -> Site:
        """Build the site of a validated config (an :class:`agent.config.AgentConfig` or the
        device section ``gridswarm agent --check`` reads); sim drivers share one bus.
        ``driver_factory`` builds non-sim drivers (default: :mod:`agent.drivers.sunspec`)."""
        owner = section.control.model_dump()
        control = ControlConfig(reserve_soc=section.reserve_soc,
                                **{k: v for k, v in owner.items() if k in ControlConfig.__dataclass_fields__})
        specs = section.devices
        drivers = build_drivers(specs, clock, seed=section.seed, utc_offset_h=utc_offset_h,
                                driver_factory=driver_factory)
        for spec in specs:
            if isinstance(spec, BatteryConfig) and spec.soc_min > control.reserve_soc:
                logger.info("%s: soc_min %.2f above the site reserve %.2f", spec.id, spec.soc_min, control.reserve_soc)
        return cls(drivers, clock, control=control, meter_resolution_s=meter_resolution_s,
                   meter_retention_s=meter_retention_s)

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Connect every driver (errors are recorded per device, not raised)."""
        for d in self._order:
            try:
                await d.connect()
            except DriverError as exc:
                d.health.failed(exc)
        self.control_log.at_start(self._order)
        self._connected = True

    async def close(self) -> None:
        """Revert every writable device to its safe default, then close the drivers."""
        for d in self._order:
            try:
                await d.revert()
            except DriverError as exc:
                logger.warning("revert of %s failed: %s", d.device_id, exc)
            try:
                await d.close()
            except DriverError as exc:  # pragma: no cover - closing is best effort
                logger.warning("close of %s failed: %s", d.device_id, exc)
        self._applied.clear()

    async def check(self) -> list[ProbeResult]:
        """Probe every device once (``gridswarm agent --check``)."""
        return [await d.probe() for d in self._order]

    # ------------------------------------------------------------------ commands

    def set_market_schedule(self, start_ts: float, end_ts: float, export_w: float, *, reason: str = "",
                            delivered_wh: float = 0.0) -> None:
        """Commit a target NET site export (W; negative = import) for ``[start_ts, end_ts)``.

        What is committed is the window's energy, ``export_w`` × its length: each tick the site
        aims at the energy still owed over the time left (see :meth:`market_target_w`), so a
        setpoint that lands late, a schedule that arrives mid-window or a layer above the market
        (frequency response, peak shaving) is made up within the window where the devices allow.
        ``delivered_wh`` is net export already delivered in the window but not in this process's
        meter (metered before a restart).

        A later schedule overrides an earlier one where they overlap. Out-of-range values
        (beyond the grid connection's limits, not finite, empty window) raise ValueError and
        change nothing.
        """
        start = _finite("start_ts", start_ts)
        end = _finite("end_ts", end_ts)
        power = _finite("export_w", export_w)
        if end <= start:
            raise ValueError(f"end_ts: must be > start_ts ({start:g}), got {end:g}")
        lim = self.grid_limits()
        if lim is not None:
            imp, exp = lim
            if power > exp or power < -imp:
                raise ValueError(f"export_w: {power:g} W outside the grid connection's [-{imp:g}, {exp:g}] W")
        delivered = _finite("delivered_wh", delivered_wh)
        self._schedules.append(Schedule(start, end, power, reason or f"committed net export {power:.0f} W", delivered))
        self._prune()

    def market_target_w(self, sched: Schedule, now: float) -> float:
        """The net export (W) that delivers what ``sched`` still owes by its end: (committed Wh,
        plus ``TRACK_MARGIN_WH`` in its direction, − net Wh metered in the window) over the time
        left, within the grid connection's limits.
        In the window's last half tick the committed power stands (a tick later the window is
        over, so a catch-up there would spill into the next one)."""
        left_s = sched.end_ts - now
        if left_s <= 0 or left_s < 0.5 * self._last_dt or now <= sched.start_ts:
            return sched.power_w
        exported, imported = self.meter.window(sched.start_ts, now)
        # aimed TRACK_MARGIN_WH past the commitment, so the reading (rounded to the Wh) never falls short
        aim = sched.energy_wh + math.copysign(TRACK_MARGIN_WH, sched.energy_wh) if sched.energy_wh else 0.0
        owed_wh = aim - (exported - imported + sched.delivered_wh)
        target = owed_wh * 3600.0 / left_s
        lim = self.grid_limits()
        if lim is not None:
            target = min(max(target, -lim[0]), lim[1])
        return target

    def clear_market_schedule(self, start_ts: float, end_ts: float) -> int:
        """Drop schedules that lie inside ``[start_ts, end_ts)``; return how many."""
        before = len(self._schedules)
        self._schedules = [s for s in self._schedules if not (s.start_ts >= start_ts and s.end_ts <= end_ts)]
        return before - len(self._schedules)

    def set_virtual_battery(self, start_ts: float, end_ts: float, power_w: float, *, reason: str = "") -> None:
        """A virtual-battery request (virtual battery, docs/architecture.md §1): extra storage power (W, + = discharge) over a window."""
        start = _finite("start_ts", start_ts)
        end = _finite("end_ts", end_ts)
        power = _finite("power_w", power_w)
        if end <= start:
            raise ValueError(f"end_ts: must be > start_ts ({start:g}), got {end:g}")
        lo, hi = self._storage_range()
        if not lo <= power <= hi:
            raise ValueError(f"power_w: {power:g} W outside the site storage's [{lo:g}, {hi:g}] W")
        self._vb.append(Schedule(start, end, power, reason))
        self._prune()

    def arm_frequency_response(self, *, droop: float = 0.04, deadband_hz: float = 0.02,
                               p_ref_w: float | None = None, max_power_w: float | None = None,
                               mode: str = "grid_support", until_ts: float | None = None,
                               nominal_hz: float | None = None, knee_hz: float | None = None,
                               knee_fraction: float = 0.0) -> FrequencyArm:
        """Arm local droop response (swarm frequency response, docs/architecture.md §1). ``p_ref_w`` defaults to the batteries' AC rating."""
        if mode not in FREQUENCY_MODES:
            raise ValueError(f"mode: must be one of {', '.join(FREQUENCY_MODES)}, got {mode!r}")
        lo, hi = self._storage_range()
        ref = max(-lo, hi) if p_ref_w is None else _finite("p_ref_w", p_ref_w)
        nominal = nominal_hz if nominal_hz is not None else self._nominal_hz()
        arm = FrequencyArm(droop=_finite("droop", droop), deadband_hz=_finite("deadband_hz", deadband_hz),
                           nominal_hz=_finite("nominal_hz", nominal), p_ref_w=ref,
                           max_power_w=math.inf if max_power_w is None else _finite("max_power_w", max_power_w),
                           mode=mode, until_ts=None if until_ts is None else _finite("until_ts", until_ts),
                           knee_hz=None if knee_hz is None else _finite("knee_hz", knee_hz),
                           knee_fraction=_finite("knee_fraction", knee_fraction))
        self._arm = arm
        return arm

    def disarm_frequency_response(self) -> None:
        self._arm = None

    @property
    def frequency_arm(self) -> FrequencyArm | None:
        return self._arm

    def frequency_request_w(self, t: float) -> float:
        """What the armed droop asks for at the last measured frequency (W, device sign)."""
        arm, f = self._arm, self._frequency_hz
        if arm is None or f is None or not arm.active(t):
            return 0.0
        return response_w(arm, f)

    def frequency_source(self) -> Driver | None:
        """The driver that measures the grid frequency: the grid connection (sim) or a device
        that reported ``frequency_hz`` (a SunSpec inverter's ``Hz``)."""
        if self._grid is not None and self._grid.measures_frequency(None):
            return self._grid  # a source before any reading (sim: fed or replayed)
        for d in self._order:
            if d.measures_frequency(self._last_tel.get(d.device_id)):
                return d
        return None

    async def respond_to_frequency(self, hz: float, *, min_change_w: float = 10.0) -> dict[str, float]:
        """The fast path (``docs/fleet.md``): take a measured frequency now and, when the droop's
        request moved by at least ``min_change_w``, arbitrate again on the last tick's readings
        and write the storage setpoints that changed, without waiting for the next tick. The
        whole safety envelope applies (owner's reserve, device limits). Returns what each
        written driver accepted (W)."""
        self.feed_frequency(hz)
        if self._arm is None or self._last_state is None:
            return {}
        now = self.clock.now()
        async with self._write_lock:
            want = self.frequency_request_w(now)
            if abs(want - self._fr_written_w) < max(min_change_w, 1e-6):
                return {}
            failed = self._last_state.errors  # devices that failed at the last tick stay out
            tels = {k: v for k, v in self._last_tel.items() if k not in failed}
            applied: dict[str, float] = {}
            for _ in range(2):  # a device that fails now: the others take over its part at once
                decision = arbitrate(self._inputs(now, self._last_dt, tels, track=False))
                self.frequency_delivered_w = _frequency_delivered(decision)
                write_failed = False
                for dev_id, sp in decision.setpoints.items():
                    d = self.drivers[dev_id]
                    if not d.writable or not d.kind.is_storage:
                        continue
                    prev = self._applied.get(dev_id)
                    if prev is not None and abs(prev - sp.power_w) < 1e-3:
                        continue
                    try:
                        applied[dev_id] = await d.apply(Setpoint(sp.power_w, sp.source, sp.reason))
                    except DriverError as exc:  # the driver's health logs the failure once
                        logger.debug("fast frequency write to %s failed: %s", dev_id, exc)
                        self._applied.pop(dev_id, None)
                        tels.pop(dev_id, None)
                        write_failed = True
                        continue
                    self._applied[dev_id] = sp.power_w
                if not write_failed:
                    break
            else:
                self.frequency_delivered_w = 0.0  # failures on both passes: claim nothing
            self._fr_written_w = want
            return applied

    def feed_frequency(self, hz: float) -> None:
        """The measured grid frequency (in simulation: fed). Used from the next tick on."""
        f = _finite("hz", hz)
        if not 40.0 <= f <= 70.0:
            raise ValueError(f"hz: {f:g} is not a plausible grid frequency (40..70 Hz)")
        self._frequency_hz = f
        if self._grid is not None:
            self._grid.observe_frequency(f)

    def set_autonomous(self, autonomous: bool) -> None:
        """Link to the coordinator lost (True) or back (False). Autonomous = self-consumption
        within the envelope; market and virtual-battery schedules are ignored while it lasts."""
        if bool(autonomous) != self._autonomous:
            logger.warning("site %s autonomous operation", "entering" if autonomous else "leaving")
        self._autonomous = bool(autonomous)

    @property
    def autonomous(self) -> bool:
        return self._autonomous

    def set_grid_outage(self, on: bool) -> None:
        """Force a grid outage on/off (sim grid only)."""
        if self._grid is None:
            raise RuntimeError("set_grid_outage needs a sim grid device")
        self._grid.set_outage(on)

    def predict_spike(self, start_ts: float, end_ts: float, extra_w: float) -> None:
        """A forecast load spike (flywheel buffering, docs/architecture.md §1): the flywheel pre-charges just before it."""
        start, end, extra = _finite("start_ts", start_ts), _finite("end_ts", end_ts), _finite("extra_w", extra_w)
        if end <= start or extra <= 0:
            raise ValueError("predict_spike: needs end_ts > start_ts and extra_w > 0")
        self._spikes.append((start, end, extra))
        self._prune()

    def set_demand_forecast(self, start_ts: float, end_ts: float, upper_w: float) -> None:
        """Upper bound of the demand forecast's confidence interval over a window (reserve trigger, docs/architecture.md §1)."""
        self._demand_upper = (_finite("start_ts", start_ts), _finite("end_ts", end_ts), _finite("upper_w", upper_w))

    def set_flywheel_plan(self, until_ts: float, shave_above_w: float | None, readiness_soc: float | None,
                          charge_below_w: float | None = None) -> None:
        """The planner's peak threshold (site import, W), flywheel readiness SoC and charge ceiling
        (import below which flywheels may recharge) until ``until_ts`` (agent/control/planner.py);
        after that the site falls back to its spike rule."""
        shave = None if shave_above_w is None else _finite("shave_above_w", shave_above_w)
        ready = None if readiness_soc is None else _fraction("readiness_soc", readiness_soc)
        ceil = None if charge_below_w is None else _finite("charge_below_w", charge_below_w)
        self._fly_plan = (_finite("until_ts", until_ts), shave, ready, ceil)

    # ------------------------------------------------------------------ the control cycle

    async def tick(self) -> SiteState:
        """One control cycle at ``clock.now()``."""
        now = self.clock.now()
        dt = 0.0 if self._last_t is None else max(0.0, now - self._last_t)
        if dt > 0:
            self._last_dt = dt
        errors: dict[str, str] = {}
        tels: dict[str, Telemetry] = {}
        if self._concurrent:
            results = await asyncio.gather(*(d.read() for d in self._order), return_exceptions=True)
            for d, r in zip(self._order, results, strict=True):
                if isinstance(r, Telemetry):
                    tels[d.device_id] = r
                elif isinstance(r, DriverError):
                    errors[d.device_id] = f"{type(r).__name__}: {r}"
                elif isinstance(r, BaseException):
                    raise r
        else:
            for d in self._order:
                try:
                    tels[d.device_id] = await d.read()
                except DriverError as exc:
                    errors[d.device_id] = f"{type(exc).__name__}: {exc}"

        for dev_id in tels:
            self.control_log.after_read(self.drivers[dev_id])
        for tel in tels.values():  # the measured frequency (grid meter or inverter ``Hz``)
            f = tel.frequency_hz if tel.frequency_hz is not None else tel.detail.get("frequency_hz")
            if isinstance(f, (int, float)) and math.isfinite(f) and 40.0 <= f <= 70.0:
                self._frequency_hz = float(f)
                break
        self._meter(now, dt, tels)  # the step just ended, before deciding (the market target reads it)
        async with self._write_lock:
            inputs = self._inputs(now, dt, tels)
            decision = arbitrate(inputs)
            self._reserve = decision.reserve
            self._fr_written_w = self.frequency_request_w(now)
            self.frequency_delivered_w = _frequency_delivered(decision)

            applied: dict[str, float] = {}
            for dev_id, sp in decision.setpoints.items():
                d = self.drivers[dev_id]
                if not d.writable or dev_id in errors:
                    continue
                prev = self._applied.get(dev_id)
                if prev is not None and abs(prev - sp.power_w) < 1e-3:
                    continue
                try:
                    applied[dev_id] = await d.apply(Setpoint(sp.power_w, sp.source, sp.reason))
                except DriverError as exc:
                    errors[dev_id] = f"{type(exc).__name__}: {exc}"
                    continue
                self._applied[dev_id] = sp.power_w
        for dev_id in errors:
            self._applied.pop(dev_id, None)  # re-send once the device is back

        net = decision.net_export_w
        for dev_id, got in applied.items():
            if self.drivers[dev_id].kind.is_storage:
                net += got - decision.setpoints[dev_id].power_w

        grid_tel = tels.get(self._grid.device_id) if self._grid is not None else None
        state = SiteState(
            ts=now, net_export_w=net, soc=self._soc(tels), devices=tels, decision=decision, applied=applied,
            errors=errors, outage=grid_tel is not None and grid_tel.status == "outage",
            autonomous=self._autonomous, frequency_hz=self._frequency_hz,
        )
        self._last_t = now
        self._last_state = state
        self._last_tel.update(tels)
        self.ticks += 1
        return state

    @property
    def last_state(self) -> SiteState | None:
        return self._last_state

    @property
    def market_schedules(self) -> tuple[Schedule, ...]:
        """The committed net-export schedules (W over a window) the site still holds, in the order
        they came; a later one overrides an earlier one where they overlap."""
        return tuple(self._schedules)

    @property
    def demand_forecast(self) -> tuple[float, float, float] | None:
        """The reserve trigger's predicted demand: (start_ts, end_ts, upper W), as
        :meth:`set_demand_forecast` last set it; None before."""
        return self._demand_upper

    @property
    def flywheel_plan(self) -> tuple[float, float | None, float | None, float | None] | None:
        """The planner's flywheel plan: (until_ts, shave above W, readiness SoC, charge below W), as
        :meth:`set_flywheel_plan` last set it; None before."""
        return self._fly_plan

    @property
    def last_dt_s(self) -> float:
        """Seconds between the last two control ticks (1.0 until a second tick): the time one
        tick's power stands for, to turn it into energy (Wh = W * last_dt_s / 3600)."""
        return self._last_dt

    # ------------------------------------------------------------------ energy questions

    def meter_window(self, start_ts: float, end_ts: float) -> tuple[float, float]:
        """(exported_wh, imported_wh) metered at the grid connection over ``[start_ts, end_ts)``."""
        return self.meter.window(_finite("start_ts", start_ts), _finite("end_ts", end_ts))

    def expected_net_wh(self, start_ts: float, end_ts: float) -> float:
        """Expected net export (Wh) over the window with no trade and storage idle: PV minus load
        from the device models' mean profiles (sim) or persistence of the last reading."""
        start, end = _finite("start_ts", start_ts), _finite("end_ts", end_ts)
        if end <= start:
            return 0.0
        n = max(1, int(math.ceil((end - start) / self.forecast_step_s)))
        h = (end - start) / n
        total = 0.0
        for k in range(n + 1):
            w = 0.5 if k in (0, n) else 1.0
            total += w * self._expected_w(start + k * h)
        return total * h / 3600.0

    def available_export_wh(self, start_ts: float, end_ts: float) -> float:
        """Energy the site could deliver over the window ABOVE the owner's reserve (offers never
        exceed this): expected PV surplus net of the site's own load, plus battery energy above the
        reserve (less what earlier committed exports draw from it), within power and export limits."""
        start, end = _finite("start_ts", start_ts), _finite("end_ts", end_ts)
        if end <= start:
            return 0.0
        hours = (end - start) / 3600.0
        now = self.clock.now()
        store_wh = 0.0
        store_w = 0.0
        for d in self._order:
            if d.kind is not DeviceKind.BATTERY or not d.writable:
                continue  # a battery the agent may not drive cannot back an offer
            tel = self._last_tel.get(d.device_id)
            if tel is None or tel.soc is None or tel.capacity_wh is None:
                continue
            floor = max(self.control.reserve_soc, float(tel.detail.get("soc_min", 0.0)))
            eff = float(tel.detail.get("discharge_efficiency", 1.0))
            store_wh += max(0.0, (tel.soc - floor) * tel.capacity_wh) * eff
            store_w += max(0.0, d.limits.max_w)
        # energy already promised between now and the window's start comes out of storage first
        for s in self._schedules:
            lo, hi = max(s.start_ts, now), min(s.end_ts, start)
            if hi > lo and s.power_w > 0:
                drawn = s.power_w * (hi - lo) / 3600.0 - self.expected_net_wh(lo, hi)
                store_wh -= max(0.0, drawn)
        store_wh = max(0.0, min(store_wh, store_w * hours))
        avail = self.expected_net_wh(start, end) + store_wh
        lim = self.grid_limits()
        if lim is not None:
            avail = min(avail, lim[1] * hours)
        return max(0.0, avail)

    # ------------------------------------------------------------------ internals

    def _prune(self) -> None:
        horizon = self.clock.now() - 2 * 86400.0
        self._schedules = [s for s in self._schedules if s.end_ts > horizon]
        self._vb = [s for s in self._vb if s.end_ts > horizon]
        self._spikes = [s for s in self._spikes if s[1] > horizon]

    def grid_limits(self) -> tuple[float, float] | None:
        """The grid connection's (import, export) limits, W, both >= 0: as the grid meter last
        reported them, else as its driver knows them before any reading; None without a grid
        device or when neither knows them."""
        if self._grid is None:
            return None
        tel = self._last_tel.get(self._grid.device_id)
        if tel is not None and "import_limit_w" in tel.detail:
            return float(tel.detail["import_limit_w"]), float(tel.detail["export_limit_w"])
        return self._grid.connection_limits()

    def _nominal_hz(self) -> float:
        """The grid connection's nominal frequency (its driver's), else the grid config's default."""
        hz = self._grid.nominal_hz() if self._grid is not None else None
        return hz if hz is not None else NOMINAL_HZ

    def storage_range(self) -> tuple[float, float]:
        """The most the site's batteries together take and give (min_w, max_w), W, device sign."""
        return self._storage_range()

    def _storage_range(self) -> tuple[float, float]:
        lo = hi = 0.0
        for d in self._order:
            if d.kind is DeviceKind.BATTERY:
                lo += d.limits.min_w
                hi += d.limits.max_w
        return lo, hi

    def _expected_w(self, t: float) -> float:
        total = 0.0
        for d in self._order:
            if d.kind not in (DeviceKind.PV, DeviceKind.LOAD):
                continue
            exp = d.expected_power_w(t)
            if exp is None:
                tel = self._last_tel.get(d.device_id)
                if tel is None:
                    continue
                exp = tel.available_discharge_w if d.kind is DeviceKind.PV else -tel.available_charge_w
            total += exp
        return total

    def _active(self, items: list[Schedule], t: float) -> Schedule | None:
        for s in reversed(items):  # the latest one wins
            if s.start_ts <= t < s.end_ts:
                return s
        return None

    def _market_w(self, sched: Schedule, now: float, track: bool) -> float:
        """The market layer's target: tracked at a tick; between ticks (the fast path) the value
        of the last tick stands, since the meter has not seen the step in progress."""
        last = self._market_last
        if not track:
            return last[1] if last is not None and last[0] is sched else sched.power_w
        w = self.market_target_w(sched, now)
        self._market_last = (sched, w)
        return w

    def _inputs(self, now: float, dt: float, tels: dict[str, Telemetry], *, track: bool = True) -> ArbiterInputs:
        stores: list[StoreView] = []
        pvs: list[PVView] = []
        loads: list[LoadView] = []
        grid: GridView | None = None
        other_w = 0.0
        for d in self._order:
            tel = tels.get(d.device_id)
            if tel is None:
                continue
            kind = d.kind
            if kind.is_storage and not d.writable:
                other_w += tel.power_w  # read-only: its power is a given, not a decision
                continue
            if kind.is_storage:
                if tel.soc is None or tel.capacity_wh is None:
                    continue
                lim = d.limits
                det = tel.detail
                stores.append(StoreView(
                    device_id=d.device_id, kind=kind.value, soc=tel.soc, capacity_wh=tel.capacity_wh,
                    max_charge_w=tel.available_charge_w,
                    max_discharge_w=tel.available_discharge_w,
                    min_w=lim.min_w, max_w=lim.max_w, soc_min=float(det.get("soc_min", 0.0)),
                    soc_max=float(det.get("soc_max", 1.0)),
                    discharge_efficiency=float(det.get("discharge_efficiency", 1.0)),
                    charge_efficiency=float(det.get("charge_efficiency", 1.0)),
                    ramp_w_per_s=lim.ramp_w_per_s,
                    prev_w=self._applied.get(d.device_id, tel.setpoint_w or 0.0),
                    reserve_soc=det.get("reserve_soc"), standing_loss_per_h=det.get("standing_loss_per_h"),
                ))
            elif kind is DeviceKind.PV:
                pvs.append(PVView(d.device_id, tel.available_discharge_w, d.limits.max_w))
            elif kind is DeviceKind.LOAD:
                demand = tel.available_charge_w
                exp = d.expected_power_w(now)
                loads.append(LoadView(d.device_id, demand, float(tel.detail.get("critical_w", demand)),
                                      -exp if exp is not None else demand,
                                      d.limits.min_w))
            elif kind is DeviceKind.GRID:
                det = tel.detail
                grid = GridView(float(det.get("import_limit_w", math.inf)), float(det.get("export_limit_w", math.inf)),
                                outage=tel.status == "outage",
                                outage_age_s=0.0)
        sched = None if self._autonomous else self._active(self._schedules, now)
        vb = None if self._autonomous else self._active(self._vb, now)
        spikes = tuple(s for s in self._spikes if s[1] > now)
        upper = None
        if self._demand_upper is not None and self._demand_upper[0] <= now < self._demand_upper[1]:
            upper = self._demand_upper[2]
        plan = self._fly_plan if self._fly_plan is not None and now < self._fly_plan[0] else None
        cmds = Commands(
            market_export_w=self._market_w(sched, now, track) if sched else None,
            market_reason=sched.reason if sched else "",
            virtual_battery_w=vb.power_w if vb else 0.0, frequency_arm=self._arm, frequency_hz=self._frequency_hz,
            autonomous=self._autonomous, spikes=spikes, demand_upper_w=upper,
            shave_above_w=plan[1] if plan else None, flywheel_readiness_soc=plan[2] if plan else None,
            flywheel_charge_below_w=plan[3] if plan else None,
            reserve=self._reserve,
        )
        return ArbiterInputs(t=now, dt=dt if dt > 0 else self._last_dt, stores=tuple(stores), pv=tuple(pvs),
                             loads=tuple(loads), grid=grid, commands=cmds, config=self.control, other_w=other_w)

    def _soc(self, tels: dict[str, Telemetry]) -> float | None:
        cap = e = 0.0
        for d in self._order:
            if d.kind is DeviceKind.BATTERY:
                tel = tels.get(d.device_id)
                if tel is not None and tel.capacity_wh and tel.soc is not None:
                    cap += tel.capacity_wh
                    e += tel.soc * tel.capacity_wh
        return e / cap if cap > 0 else None

    def _meter(self, now: float, dt: float, tels: dict[str, Telemetry]) -> None:
        gtel = tels.get(self._grid.device_id) if self._grid is not None else None
        if gtel is not None and gtel.energy_in_wh is not None and gtel.energy_out_wh is not None:
            counters = (gtel.energy_in_wh, gtel.energy_out_wh)  # (exported, imported) as seen by the grid
            if self._grid_counters is not None and self._last_t is not None:
                d_exp = max(0.0, counters[0] - self._grid_counters[0])
                d_imp = max(0.0, counters[1] - self._grid_counters[1])
                self.meter.add(self._last_t, now, d_exp, d_imp)
            self._grid_counters = counters
            return
        # no metered grid connection: integrate the last tick's net export over the step
        if self._last_state is not None and dt > 0:
            wh = self._last_state.net_export_w * dt / 3600.0
            self.meter.add(now - dt, now, max(0.0, wh), max(0.0, -wh))


