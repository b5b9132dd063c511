"""Device drivers: one contract (:mod:`agent.drivers.base`), a simulator (:mod:`agent.drivers.sim`)
and SunSpec over Modbus TCP (:mod:`agent.drivers.sunspec`)."""

from agent.drivers.base import (
    BadRegisterValueError,
    DeviceKind,
    DeviceLimits,
    DeviceNotSupportedError,
    DeviceUnavailableError,
    Driver,
    DriverError,
    DriverReadOnlyError,
    DriverTimeoutError,
    ProbeResult,
    Setpoint,
    SetpointOutOfRangeError,
    Telemetry,
)

__all__ = [
    "BadRegisterValueError",
    "DeviceKind",
    "DeviceLimits",
    "DeviceNotSupportedError",
    "DeviceUnavailableError",
    "Driver",
    "DriverError",
    "DriverReadOnlyError",
    "DriverTimeoutError",
    "ProbeResult",
    "Setpoint",
    "SetpointOutOfRangeError",
    "Telemetry",
]
