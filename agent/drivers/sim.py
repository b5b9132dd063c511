"""The ``sim`` driver: every device of a site simulated over one shared bus, stepped by the clock.

All sim drivers of a site share a :class:`SimBus`. The first read at a new clock time advances
every model from the bus's last time to now, holding each device's power over the step (the
value the control loop saw and set at the start of the step), and books the balance at the grid
connection. So integration follows clock times, not the number of calls, and a run is fully
determined by the config, the seed and the sequence of clock times and setpoints.

Faults can be injected (:meth:`SimDriver.inject_fault`) so the conformance suite and the control
loop's tests see the same error types a real device produces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from agent.devices.frequency_trace import FrequencyTrace, trace_from_spec
from agent.devices.grid import GridModel
from agent.devices.inverter import InverterModel
from agent.devices.load import LoadModel
from agent.devices.pv import PVModel
from agent.devices.spec import (
    BatteryConfig,
    FlywheelConfig,
    GridConfig,
    LoadConfig,
    PVConfig,
    SimDeviceConfig,
    UPSConfig,
)
from agent.devices.storage import StoreModel, battery_from_spec, flywheel_from_spec, ups_from_spec
from agent.drivers.base import (
    BadRegisterValueError,
    DeviceKind,
    DeviceLimits,
    DeviceUnavailableError,
    Driver,
    DriverTimeoutError,
    Setpoint,
    Telemetry,
)
from gridswarm.clock import Clock

__all__ = ["SimBus", "SimDriver", "SimGrid", "SimLoad", "SimPV", "SimStorage", "build_sim_driver"]

FAULTS = ("timeout", "unavailable", "bad_value")


class SimBus:
    """The site bus every sim device of one site is attached to."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.t: float | None = None
        self.members: list[SimDriver] = []
        self.grid: SimGrid | None = None

    def attach(self, driver: SimDriver) -> None:
        if isinstance(driver, SimGrid):
            self.grid = driver
        else:
            self.members.append(driver)

    def outage(self, t: float) -> bool:
        return self.grid is not None and self.grid.model.in_outage(t)

    def outage_age(self, t: float) -> float:
        """Seconds since the current outage began (0 when none)."""
        if self.grid is None or not self.grid.model.in_outage(t):
            return 0.0
        since = self.grid.model.outage_since
        return t - since if since is not None else 0.0

    def advance(self, t: float) -> None:
        """Step every model to ``t`` (idempotent for a time already reached)."""
        if self.t is None:
            self.t = t
            if self.grid is not None and self.grid.model.in_outage(t):
                self.grid.model.outage_since = t
            for m in self.members:
                m.settle_at(t)
            return
        if t <= self.t:
            return
        t0, self.t = self.t, t
        grid = self.grid.model if self.grid is not None else None
        if grid is not None:
            out0 = grid.in_outage(t0)
            if out0 and grid.outage_since is None:
                grid.outage_since = t0
            if not out0:
                grid.outage_since = None
        net_wh = 0.0
        for m in self.members:
            net_wh += m.step(t0, t)
        if grid is not None:
            if grid.in_outage(t) and grid.outage_since is None:
                grid.outage_since = t
            grid.settle(t, net_wh, self.net_export_w())

    def net_export_w(self) -> float:
        return sum(m.power_w for m in self.members)


class SimDriver(Driver):
    """Base of the sim drivers: clock, bus, fault injection."""

    driver_name = "sim"
    concurrent_reads = False  # every read steps the shared bus, in order

    def __init__(self, device_id: str, kind: DeviceKind, bus: SimBus, *, writable: bool = True) -> None:
        super().__init__(device_id, kind, writable=writable)
        self.bus = bus
        self.clock = bus.clock
        self.power_w = 0.0
        self.energy_out_wh = 0.0
        self.energy_in_wh = 0.0
        self.last_setpoint: Setpoint | None = None
        self._fault: str | None = None
        self._connected = False
        bus.attach(self)

    # -- fault injection -----------------------------------------------------------------

    def inject_fault(self, fault: str | None) -> None:
        """Make following calls fail like a real device: ``timeout``, ``unavailable``, ``bad_value``."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")
        self._fault = fault

    def _check_fault(self) -> None:
        if self._fault == "timeout":
            raise DriverTimeoutError("simulated device did not answer", device_id=self.device_id)
        if self._fault == "unavailable":
            raise DeviceUnavailableError("simulated device vanished", device_id=self.device_id)

    # -- contract ------------------------------------------------------------------------

    async def connect(self) -> None:
        self._check_fault()
        self._connected = True

    async def _read(self) -> Telemetry:
        self._check_fault()
        now = self.clock.now()
        self.bus.advance(now)
        tel = self._telemetry(now)
        if self._fault == "bad_value":
            raise BadRegisterValueError(f"simulated nonsense value (soc={-1.0})", device_id=self.device_id)
        return tel

    async def _apply(self, setpoint: Setpoint) -> float:
        self._check_fault()
        if self._fault == "bad_value":
            raise BadRegisterValueError("simulated device rejected the write", device_id=self.device_id)
        now = self.clock.now()
        self.bus.advance(now)
        applied = self._set(setpoint.power_w, now)
        self.last_setpoint = setpoint
        return applied

    async def _revert(self) -> float:
        self._check_fault()
        now = self.clock.now()
        self.bus.advance(now)
        self.last_setpoint = None
        return self._set(self._safe_default(), now)

    def expected_power_w(self, t: float) -> float | None:
        """The model's mean power at ``t`` (no noise), for forecasts; None = unknown."""
        return None

    # -- hooks -----------------------------------------------------------------------------

    def settle_at(self, t: float) -> None:
        """Evaluate the device's power at ``t`` without integrating."""

    def step(self, t0: float, t1: float) -> float:
        """Integrate from ``t0`` to ``t1`` holding :attr:`power_w`; return Wh delivered to the bus."""
        raise NotImplementedError

    def _book(self, wh: float) -> float:
        if wh >= 0:
            self.energy_out_wh += wh
        else:
            self.energy_in_wh -= wh
        return wh

    def _telemetry(self, t: float) -> Telemetry:
        raise NotImplementedError

    def _set(self, power_w: float, t: float) -> float:
        raise NotImplementedError

    def _safe_default(self) -> float:
        return 0.0


class SimStorage(SimDriver):
    """Battery, UPS or flywheel behind its own bidirectional inverter."""

    def __init__(self, device_id: str, kind: DeviceKind, bus: SimBus, store: StoreModel,
                 inverter: InverterModel, *, writable: bool = True, reserve_soc: float | None = None,
                 takeover_s: float = 0.0, standing_loss_per_h: float | None = None) -> None:
        super().__init__(device_id, kind, bus, writable=writable)
        self.store = store
        self.inverter = inverter
        self.reserve_soc = reserve_soc
        self.takeover_s = takeover_s
        self.standing_loss_per_h = standing_loss_per_h
        self.requested_w = 0.0
        self._limits = DeviceLimits(-inverter.ac_limits(store.max_charge_w, 0.0)[0],
                                    inverter.ac_limits(0.0, store.max_discharge_w)[1],
                                    inverter.ramp_w_per_s)

    @property
    def limits(self) -> DeviceLimits:
        return self._limits

    def _dc_limits(self, t: float) -> tuple[float, float]:
        chg, dis = self.store.dc_limits()
        if self.kind is DeviceKind.UPS and self.bus.outage(t) and self.bus.outage_age(t) < self.takeover_s:
            dis = 0.0  # a standby UPS needs takeover_s to carry load
        return chg, dis

    def _reaccept(self, t: float) -> None:
        chg, dis = self._dc_limits(t)
        self.inverter.accept(self.requested_w, chg, dis)
        ac_chg, ac_dis = self.inverter.ac_limits(chg, dis)
        self.inverter.ac_w = max(-ac_chg, min(ac_dis, self.inverter.ac_w))
        if math.isinf(self.inverter.ramp_w_per_s):
            self.inverter.ac_w = self.inverter.target_w
        self.power_w = self.inverter.ac_w

    def settle_at(self, t: float) -> None:
        self._reaccept(t)

    def step(self, t0: float, t1: float) -> float:
        dt = t1 - t0
        start = self.inverter.ac_w
        end = self.inverter.ramp(dt)
        ac = 0.5 * (start + end)
        dc = self.inverter.dc_for(ac)
        got = self.store.step(dc, dt)
        if abs(got - dc) > 1e-9:
            ac = self.inverter.ac_for(got)
            self.inverter.ac_w = ac
        wh = self._book(ac * dt / 3600.0)
        self._reaccept(t1)
        return wh

    def _set(self, power_w: float, t: float) -> float:
        self.requested_w = power_w
        self._reaccept(t)
        return self.inverter.target_w

    def _telemetry(self, t: float) -> Telemetry:
        chg, dis = self._dc_limits(t)
        ac_chg, ac_dis = self.inverter.ac_limits(chg, dis)
        s = self.store
        detail: dict[str, Any] = {
            "requested_w": self.requested_w,
            "inverter_rated_w": self.inverter.rated_w,
            "inverter_efficiency": self.inverter.efficiency,
            "discharge_efficiency": s.eta_d * self.inverter.efficiency,
            "charge_efficiency": s.eta_c * self.inverter.efficiency,
            "soc_min": s.soc_min,
            "soc_max": s.soc_max,
            "lost_wh": s.lost_wh,
        }
        if self.reserve_soc is not None:
            detail["reserve_soc"] = self.reserve_soc
        if self.standing_loss_per_h is not None:
            detail["standing_loss_per_h"] = self.standing_loss_per_h
        if s.temperature_c is not None:
            detail["temp_min_c"] = s.temp_min_c
            detail["temp_max_c"] = s.temp_max_c
        return Telemetry(
            device_id=self.device_id, kind=self.kind.value, ts=t, power_w=self.power_w,
            setpoint_w=self.inverter.target_w, available_discharge_w=ac_dis, available_charge_w=ac_chg,
            soc=s.soc, energy_wh=s.energy_wh, capacity_wh=s.capacity_wh, temperature_c=s.temperature_c,
            soh=s.soh, energy_out_wh=self.energy_out_wh, energy_in_wh=self.energy_in_wh,
            status="ok" if s._derate() > 0 else "temperature", detail=detail,
        )

    def describe(self) -> str:
        s = self.store
        return (f"sim {self.kind.value}: {s.nameplate_wh:.0f} Wh, inverter {self.inverter.rated_w:.0f} W, "
                f"charge {-self.limits.min_w:.0f} W / discharge {self.limits.max_w:.0f} W AC")


class _SimProfile(SimDriver):
    """A device whose power follows its model's profile (PV, load): power at the start of a step
    holds for the step, then the model is read again at its end."""

    model: Any
    _limits: DeviceLimits

    @property
    def limits(self) -> DeviceLimits:
        return self._limits

    def settle_at(self, t: float) -> None:
        self.power_w = self.model.power_w(t)

    def step(self, t0: float, t1: float) -> float:
        wh = self._book(self.power_w * (t1 - t0) / 3600.0)
        self.power_w = self.model.power_w(t1)
        return wh


class SimPV(_SimProfile):
    def __init__(self, device_id: str, bus: SimBus, model: PVModel, *, writable: bool = True) -> None:
        super().__init__(device_id, DeviceKind.PV, bus, writable=writable)
        self.model = model
        self._limits = DeviceLimits(0.0, model.rated_w)

    def _set(self, power_w: float, t: float) -> float:
        self.model.limit_w = power_w
        self.power_w = self.model.power_w(t)
        return power_w

    def _safe_default(self) -> float:
        return self.model.rated_w

    def expected_power_w(self, t: float) -> float | None:
        return self.model.power_w(t) if self.model.limit_w < self.model.rated_w else self.model.available_w(t)

    def _telemetry(self, t: float) -> Telemetry:
        avail = self.model.available_w(t)
        return Telemetry(
            device_id=self.device_id, kind="pv", ts=t, power_w=self.power_w, setpoint_w=self.model.limit_w,
            available_discharge_w=avail, available_charge_w=0.0,
            energy_out_wh=self.energy_out_wh, energy_in_wh=self.energy_in_wh,
            detail={"curtailed_w": max(0.0, avail - self.power_w), "rated_w": self.model.rated_w,
                    "peak_w": self.model.peak_w, "profile": self.model.profile_name},
        )

    def describe(self) -> str:
        return f"sim pv: {self.model.peak_w:.0f} Wp, inverter {self.model.rated_w:.0f} W, TMY3 {self.model.profile_name}"


class SimLoad(_SimProfile):
    def __init__(self, device_id: str, bus: SimBus, model: LoadModel, *, writable: bool = True) -> None:
        super().__init__(device_id, DeviceKind.LOAD, bus, writable=writable)
        self.model = model
        self._limits = DeviceLimits(-1.2 * model.peak_w, 0.0)

    def _set(self, power_w: float, t: float) -> float:
        # a ceiling at the most negative limit means "no shedding"
        self.model.set_limit(math.inf if power_w <= self._limits.min_w else -power_w)
        self.power_w = self.model.power_w(t)
        return power_w

    def _safe_default(self) -> float:
        return self._limits.min_w

    def expected_power_w(self, t: float) -> float | None:
        return -self.model.expected_w(t)

    def _telemetry(self, t: float) -> Telemetry:
        m = self.model
        demand = m.demand_w(t)
        return Telemetry(
            device_id=self.device_id, kind="load", ts=t, power_w=self.power_w,
            setpoint_w=-m.limit_w if math.isfinite(m.limit_w) else self._limits.min_w,
            available_discharge_w=0.0, available_charge_w=demand,
            energy_out_wh=self.energy_out_wh, energy_in_wh=self.energy_in_wh,
            detail={"demand_w": demand, "critical_w": m.critical_w(t), "shed_w": demand + self.power_w,
                    "sheddable_fraction": m.sheddable_fraction, "profile": m.profile, "synthetic": True},
        )

    def describe(self) -> str:
        return (f"sim load: {self.model.profile} (synthetic), peak {self.model.peak_w:.0f} W, "
                f"{self.model.sheddable_fraction:.0%} sheddable")


class SimGrid(SimDriver):
    """The grid connection (the bus's slack). Not controllable; outages can be forced."""

    def __init__(self, device_id: str, bus: SimBus, model: GridModel, *, writable: bool = True,
                 frequency_trace: FrequencyTrace | None = None) -> None:
        super().__init__(device_id, DeviceKind.GRID, bus, writable=writable)
        self.model = model
        self._limits = DeviceLimits(0.0, 0.0)
        self.frequency_trace = frequency_trace  # replayed measured frequency (None: fed or nominal)

    def frequency_at(self, t: float) -> float:
        """The frequency the connection measures at ``t``: the trace's, else the last one fed."""
        if self.frequency_trace is not None:
            f = self.frequency_trace.at(t)
            if f is not None:
                return f
        return self.model.frequency_hz

    async def read_frequency(self) -> float:
        """The fast path's light read: only the measured frequency (Hz)."""
        self._check_fault()
        return self.frequency_at(self.clock.now())

    @property
    def limits(self) -> DeviceLimits:
        return self._limits

    def set_outage(self, on: bool) -> None:
        """Force an outage on or off (sim only)."""
        now = self.clock.now()
        self.bus.advance(now)
        self.model.forced_outage = bool(on)
        if on and self.model.outage_since is None:
            self.model.outage_since = now

    def set_frequency(self, hz: float) -> None:
        self.model.frequency_hz = float(hz)

    def observe_frequency(self, hz: float) -> None:
        self.set_frequency(hz)

    def measures_frequency(self, last: Telemetry | None) -> bool:
        return True  # fed or replayed, even before the first reading

    def nominal_hz(self) -> float | None:
        return self.model.nominal_hz

    def connection_limits(self) -> tuple[float, float] | None:
        return self.model.import_limit_w, self.model.export_limit_w

    def step(self, t0: float, t1: float) -> float:  # pragma: no cover - the grid is not a member
        return 0.0

    def _set(self, power_w: float, t: float) -> float:
        return 0.0

    def _telemetry(self, t: float) -> Telemetry:
        m = self.model
        outage = m.in_outage(t)
        power = 0.0 if outage else -self.bus.net_export_w()
        return Telemetry(
            device_id=self.device_id, kind="grid", ts=t, power_w=power, setpoint_w=None,
            available_discharge_w=0.0 if outage else m.import_limit_w,
            available_charge_w=0.0 if outage else m.export_limit_w,
            energy_out_wh=m.imported_wh, energy_in_wh=m.exported_wh,
            status="outage" if outage else "ok",
            detail={"import_limit_w": m.import_limit_w, "export_limit_w": m.export_limit_w,
                    "nominal_hz": m.nominal_hz, "frequency_hz": self.frequency_at(t), "outage": outage,
                    "unserved_wh": m.unserved_wh, "spilled_wh": m.spilled_wh},
        )

    def describe(self) -> str:
        m = self.model
        return f"sim grid: import {m.import_limit_w:.0f} W, export {m.export_limit_w:.0f} W, {m.nominal_hz:g} Hz"


def build_sim_driver(spec: SimDeviceConfig, bus: SimBus, *, seed: int, index: int,
                     utc_offset_h: float) -> SimDriver:
    """One sim driver from a validated device config (:mod:`agent.devices.spec`)."""
    dev_id = spec.id or spec.type
    w = spec.writable
    if isinstance(spec, (BatteryConfig, UPSConfig, FlywheelConfig)):
        inv = spec.inverter
        inverter = InverterModel(inv.rated_w or spec.largest_w(), inv.efficiency, inv.ramp_w_per_s)
        if isinstance(spec, BatteryConfig):
            return SimStorage(dev_id, DeviceKind.BATTERY, bus, battery_from_spec(spec), inverter, writable=w)
        if isinstance(spec, UPSConfig):
            return SimStorage(dev_id, DeviceKind.UPS, bus, ups_from_spec(spec), inverter, writable=w,
                              reserve_soc=spec.reserve_soc, takeover_s=spec.takeover_s)
        return SimStorage(dev_id, DeviceKind.FLYWHEEL, bus, flywheel_from_spec(spec), inverter, writable=w,
                          standing_loss_per_h=spec.standing_loss_per_h)
    if isinstance(spec, PVConfig):
        inv = spec.inverter
        return SimPV(dev_id, bus, PVModel(spec.peak_w, spec.profile, rated_w=inv.rated_w or spec.peak_w,
                                          efficiency=inv.efficiency, utc_offset_h=spec.utc_offset_h),
                     writable=w)
    if isinstance(spec, LoadConfig):
        off = spec.utc_offset_h if spec.utc_offset_h is not None else utc_offset_h
        return SimLoad(dev_id, bus, LoadModel(spec.profile, spec.peak_w, seed=seed, stream=index,
                                              sheddable_fraction=spec.sheddable_fraction, utc_offset_h=off),
                       writable=w)
    if isinstance(spec, GridConfig):
        trace = spec.frequency_trace.model_dump() if spec.frequency_trace is not None else None
        return SimGrid(dev_id, bus, GridModel(spec.import_limit_w, spec.export_limit_w,
                                              spec.nominal_hz, list(spec.outages)), writable=w,
                       frequency_trace=trace_from_spec(trace))
    raise ValueError(f"no sim model for device type {spec.type!r}")


SimFactory = Callable[[SimDeviceConfig, SimBus], SimDriver]
