"""The driver contract, the values that cross it, and the agent's device error hierarchy.

A driver does I/O with one device and nothing else; controllers never see a driver's
transport (docs/architecture.md §4). The contract, after VOLTTRON's
``BaseInterface``::

    await driver.connect()                  # open the transport, discover the device
    tel = await driver.read()               # -> Telemetry at the clock's now
    applied = await driver.apply(setpoint)  # -> the power the device accepted, W
    await driver.revert()                   # back to the device's safe default
    await driver.probe()                    # -> ProbeResult (for ``gridswarm agent --check``)
    await driver.close()

Sign convention (docs/architecture.md §6), written once here and used by every driver and model:
**power_w > 0 means the device delivers power to the site bus** (battery discharge, PV
generation, grid import as seen from the bus); **power_w < 0 means it takes power from the
bus** (battery charge, load consumption, grid export).

Errors raised by drivers (foreign transport errors are mapped at the driver boundary with
``raise ... from exc``; control code never sees pymodbus exceptions)::

    DriverError
     ├── DriverTimeoutError (also TimeoutError)        the device did not answer in time
     ├── DeviceUnavailableError (also ConnectionError) the device is gone / refused / closed
     ├── BadRegisterValueError (also ValueError)       the device answered nonsense
     ├── DeviceNotSupportedError                      discovery found nothing we can drive
     ├── DriverReadOnlyError (also PermissionError)    a write on a driver not allowed to write
     └── SetpointOutOfRangeError (also ValueError)    a setpoint outside the device's limits;
                                                      nothing is written

:class:`DriverHealth` turns a stream of successes and failures into log lines: one warning on
the transition to failing, one "recovered" on the way back (Home Assistant's update
coordinator).
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from gridswarm.errors import GridSwarmError

logger = logging.getLogger(__name__)

__all__ = [
    "BadRegisterValueError",
    "DeviceKind",
    "DeviceLimits",
    "DeviceNotSupportedError",
    "DeviceUnavailableError",
    "Driver",
    "DriverError",
    "DriverHealth",
    "DriverReadOnlyError",
    "DriverTimeoutError",
    "ProbeResult",
    "Setpoint",
    "SetpointOutOfRangeError",
    "ControlReport",
    "Telemetry",
    "UNITS",
]

#: Units of the telemetry fields, for people reading ``gridswarm agent --check``.
UNITS = {
    "power_w": "W", "setpoint_w": "W", "available_discharge_w": "W", "available_charge_w": "W",
    "soc": "0..1", "energy_wh": "Wh", "capacity_wh": "Wh", "temperature_c": "°C", "soh": "0..1",
    "energy_out_wh": "Wh", "energy_in_wh": "Wh", "voltage_v": "V", "frequency_hz": "Hz",
}


# --------------------------------------------------------------------------- errors


class DriverError(GridSwarmError):
    """Root of every error a driver raises. ``device_id`` names the device when known."""

    def __init__(self, message: str, *, device_id: str | None = None) -> None:
        super().__init__(f"{device_id}: {message}" if device_id else message)
        self.device_id = device_id


class DriverTimeoutError(DriverError, TimeoutError):
    """The device did not answer within the driver's timeout."""


class DeviceUnavailableError(DriverError, ConnectionError):
    """The device cannot be reached (refused, closed, vanished, not connected)."""


class BadRegisterValueError(DriverError, ValueError):
    """The device answered with a value that cannot be right (not implemented, out of range)."""


class DeviceNotSupportedError(DriverError):
    """Discovery found no model this driver can drive."""


class DriverReadOnlyError(DriverError, PermissionError):
    """A write was asked of a driver whose config does not allow writes."""


class SetpointOutOfRangeError(DriverError, ValueError):
    """A setpoint outside the device's limits; nothing was written."""


# --------------------------------------------------------------------------- values


class DeviceKind(str, Enum):
    """What a device is; telemetry of each kind fills the fields that make sense for it."""

    BATTERY = "battery"
    FLYWHEEL = "flywheel"
    UPS = "ups"
    PV = "pv"
    LOAD = "load"
    GRID = "grid"

    @property
    def is_storage(self) -> bool:
        return self in (DeviceKind.BATTERY, DeviceKind.FLYWHEEL, DeviceKind.UPS)


@dataclass(frozen=True, slots=True)
class DeviceLimits:
    """Static limits of a device's setpoint, W, device sign.

    Storage: ``min_w = -max charge``, ``max_w = +max discharge`` (AC, at the bus).
    PV: the setpoint is a curtailment ceiling in ``[0, max_w]``.
    Load: the setpoint is a consumption ceiling in ``[min_w, 0]`` (``-rated`` = no shedding);
    only the sheddable part of a load obeys it.
    Grid: not controllable (``min_w == max_w == 0``), limits are informational.
    """

    min_w: float
    max_w: float
    ramp_w_per_s: float = math.inf

    def contains(self, power_w: float) -> bool:
        return self.min_w - 1e-9 <= power_w <= self.max_w + 1e-9


@dataclass(frozen=True, slots=True)
class Setpoint:
    """A power target for one device, W, device sign (+ = deliver to the bus).

    ``source`` and ``reason`` say which control layer produced it and why (docs/architecture.md §4); drivers
    pass them through to logs and telemetry but never act on them.
    """

    power_w: float
    source: str = "idle"
    reason: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.power_w, (int, float)) or not math.isfinite(self.power_w):
            raise SetpointOutOfRangeError(f"setpoint power_w must be a finite number, got {self.power_w!r}")


@dataclass(frozen=True, slots=True)
class Telemetry:
    """One reading of one device at ``ts`` (clock seconds). Units: W, Wh, SoC 0..1, °C.

    ``power_w`` is AC power at the bus, device sign (+ = delivering to the bus).
    ``available_discharge_w`` / ``available_charge_w`` (both >= 0) say how much the device could
    deliver / absorb right now within its own limits (SoC, temperature, rating). For PV the first
    is the uncurtailed output; for a load the second is its current demand.
    ``energy_out_wh`` / ``energy_in_wh`` are cumulative counters of energy delivered to / taken
    from the bus since the driver started (a meter's lifetime registers), when the device has them.
    ``voltage_v`` (AC RMS, line-to-neutral when the device has it, else line-to-line) and
    ``frequency_hz`` are what the device measures at its AC terminals, when it measures them.
    """

    device_id: str
    kind: str
    ts: float
    power_w: float
    setpoint_w: float | None = None
    available_discharge_w: float = 0.0
    available_charge_w: float = 0.0
    soc: float | None = None
    energy_wh: float | None = None
    capacity_wh: float | None = None
    temperature_c: float | None = None
    soh: float | None = None
    energy_out_wh: float | None = None
    energy_in_wh: float | None = None
    voltage_v: float | None = None
    frequency_hz: float | None = None
    status: str = "ok"
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "detail":
                value = dict(value)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class ControlReport:
    """What the agent can and cannot control on a device, and why.

    ``controls``: what the agent will drive (empty: nothing). ``cannot``: what it will not, each
    with its reason. ``missing``: figures the controller needs that neither the device nor the
    config supplies, mapped to what their absence blocks and how to supply them.
    """

    controls: tuple[str, ...] = ()
    cannot: tuple[str, ...] = ()
    missing: Mapping[str, str] = field(default_factory=dict)

    @property
    def controlled(self) -> bool:
        return bool(self.controls)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What ``driver.probe()`` found (``gridswarm agent --check``)."""

    device_id: str
    kind: str
    driver: str
    ok: bool
    detail: str
    writable: bool = False
    telemetry: Telemetry | None = None
    error: str | None = None
    models: tuple[int, ...] = ()
    control: ControlReport | None = None

    def values(self) -> dict[str, dict[str, Any]]:
        """The values read, each with its unit: ``{"power_w": {"value": 1200.0, "unit": "W"}}``."""
        if self.telemetry is None:
            return {}
        tel = self.telemetry.as_dict()
        return {k: {"value": tel[k], "unit": u} for k, u in UNITS.items() if k in tel}

    def as_dict(self) -> dict[str, Any]:
        ctl = self.control
        return {
            "device_id": self.device_id,
            "kind": self.kind,
            "driver": self.driver,
            "ok": self.ok,
            "detail": self.detail,
            "writable": self.writable,
            "error": self.error,
            "models": list(self.models),
            "values": self.values(),
            "controls": list(ctl.controls) if ctl else [],
            "cannot": list(ctl.cannot) if ctl else [],
            "missing": dict(ctl.missing) if ctl else {},
            "telemetry": self.telemetry.as_dict() if self.telemetry else None,
        }

    # mapping protocol, so ``dict(result)`` gives :meth:`as_dict` (JSON-ready)
    def keys(self) -> list[str]:
        return list(self.as_dict())

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]


# --------------------------------------------------------------------------- contract


class Driver(abc.ABC):
    """One device behind one transport.

    Subclasses implement :meth:`_read`, :meth:`_apply` and :meth:`_revert` and may override
    :meth:`connect` / :meth:`close`. The public methods here add what every driver must do the
    same way: range checks before any write (nothing changes on a bad setpoint), the read-only
    guard, and the health bookkeeping that logs a failure once and "recovered" once.
    """

    driver_name: str = "base"

    def __init__(self, device_id: str, kind: DeviceKind, *, writable: bool) -> None:
        self.device_id = device_id
        self.kind = kind
        self.writable = writable
        self.health = DriverHealth(device_id)

    # -- contract -----------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def limits(self) -> DeviceLimits:
        """Setpoint limits the device accepts (W, device sign)."""

    async def connect(self) -> None:
        """Open the transport and discover the device. Idempotent."""

    async def close(self) -> None:
        """Release the transport. Idempotent."""

    async def read(self) -> Telemetry:
        try:
            tel = await self._read()
        except DriverError as exc:
            self.health.failed(exc)
            raise
        self.health.succeeded()
        return tel

    async def apply(self, setpoint: Setpoint) -> float:
        """Apply ``setpoint``; return the power the device accepted (W, device sign).

        Raises :class:`DriverReadOnlyError` when writes are not allowed and
        :class:`SetpointOutOfRangeError` outside :attr:`limits`; in both cases nothing is written.
        """
        if not self.writable:
            raise DriverReadOnlyError("driver is read-only (config does not allow writes)", device_id=self.device_id)
        lim = self.limits
        if not lim.contains(setpoint.power_w):
            raise SetpointOutOfRangeError(
                f"setpoint {setpoint.power_w:.1f} W outside [{lim.min_w:.1f}, {lim.max_w:.1f}] W",
                device_id=self.device_id,
            )
        try:
            applied = await self._apply(setpoint)
        except DriverError as exc:
            self.health.failed(exc)
            raise
        self.health.succeeded()
        return applied

    async def revert(self) -> float:
        """Return the device to its safe default (storage idle, no curtailment, no shedding)."""
        if not self.writable:
            return 0.0
        try:
            applied = await self._revert()
        except DriverError as exc:
            self.health.failed(exc)
            raise
        self.health.succeeded()
        return applied

    async def probe(self) -> ProbeResult:
        """Connect if needed and read once; never raises for device errors and never writes."""
        try:
            await self.connect()
            tel = await self.read()
        except DriverError as exc:
            return ProbeResult(self.device_id, self.kind.value, self.driver_name, False,
                               self.describe(), self.writable, None, f"{type(exc).__name__}: {exc}",
                               self.discovered_models(), self.control_report())
        return ProbeResult(self.device_id, self.kind.value, self.driver_name, True, self.describe(),
                           self.writable, tel, None, self.discovered_models(), self.control_report())

    # -- what the site may ask beyond I/O (defaults: the driver knows nothing more) --------
    # Device- and simulator-specific answers live in the drivers that have them, so the site
    # never needs to know which driver it talks to (docs/architecture.md).

    #: False for drivers whose reads step one shared in-process model in order (the simulator's
    #: bus); the site reads all others concurrently.
    concurrent_reads: bool = True

    def expected_power_w(self, t: float) -> float | None:
        """The device's expected mean power at ``t`` (W, device sign), for forecasts, when the
        driver models the device; None = unknown (the site then uses the last reading)."""
        return None

    def connection_limits(self) -> tuple[float, float] | None:
        """A grid connection's (import, export) limits in W known before any reading; None = unknown."""
        return None

    def nominal_hz(self) -> float | None:
        """The nominal grid frequency the device is configured for (Hz); None = not known here."""
        return None

    def measures_frequency(self, last: Telemetry | None) -> bool:
        """Whether this driver is a source of the measured grid frequency, given its last reading
        (``last`` is None before the first); a source implements :meth:`read_frequency`."""
        return False

    async def read_frequency(self) -> float | None:
        """A light read of only the measured grid frequency (Hz); None when not measured."""
        return None

    def observe_frequency(self, hz: float) -> None:
        """The site's measured frequency, for drivers that simulate it (default: ignored)."""

    def set_outage(self, on: bool) -> None:
        """Force a grid outage on or off: only a simulated grid connection can."""
        raise RuntimeError(f"set_grid_outage needs a sim grid device, not {self.driver_name} {self.kind.value}")

    def describe(self) -> str:
        """One line saying what the driver found (models, ratings)."""
        return f"{self.driver_name} {self.kind.value}"

    def discovered_models(self) -> tuple[int, ...]:
        """The device's information models, in the order found (drivers that discover them)."""
        return ()

    def control_report(self) -> ControlReport:
        """What the agent can control on this device and what it cannot (see :class:`ControlReport`).

        The default: a grid connection is measured, never controlled; any other device is
        controlled through its power setpoint when writable.
        """
        if self.kind is DeviceKind.GRID:
            return ControlReport((), ("power: a grid connection is measured, not controlled",))
        if not self.writable:
            return ControlReport((), ("power setpoint: read-only (set writable: true in the config to allow writes)",))
        lim = self.limits
        return ControlReport((f"power setpoint within [{lim.min_w:.0f}, {lim.max_w:.0f}] W",))

    # -- implementation hooks -----------------------------------------------------------

    @abc.abstractmethod
    async def _read(self) -> Telemetry: ...

    @abc.abstractmethod
    async def _apply(self, setpoint: Setpoint) -> float: ...

    @abc.abstractmethod
    async def _revert(self) -> float: ...


class DriverHealth:
    """Logs a device failure on the transition only, and "recovered" once on the way back."""

    __slots__ = ("device_id", "ok", "last_error", "failures")

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.ok = True
        self.last_error: str | None = None
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.ok:
            self.ok = False
            logger.warning("device %s failing: %s", self.device_id, self.last_error)

    def succeeded(self) -> None:
        if not self.ok:
            self.ok = True
            logger.info("device %s recovered after %d failed calls", self.device_id, self.failures)
            self.failures = 0
