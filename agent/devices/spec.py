"""The ``devices:`` section of a site config: one pydantic model per device type and driver.

Each model holds its fields' types, defaults, ranges, units and meanings, written once. A device
is a discriminated union on ``type`` (and ``driver``): ``{"type": "battery"}`` validates as
:class:`BatteryConfig`, ``{"type": "battery", "driver": "sunspec"}`` as
:class:`SunSpecBatteryConfig`. The same models validate a config, fill its defaults and
generate the reference ``docs/devices.md`` (``scripts/gen_device_docs.py``).

A wrong field gets a one-line error that names it, e.g. ``devices[1].capacity_wh: must be > 0,
got 0`` (:func:`gridswarm.validation.error_lines` writes it).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gridswarm.errors import UserError
from gridswarm.validation import error_lines, field_error

__all__ = [
    "DEVICE_MODELS",
    "BatteryConfig",
    "DeviceConfig",
    "DeviceConfigError",
    "Devices",
    "FlywheelConfig",
    "FrequencyTraceConfig",
    "AnyDevice",
    "GridConfig",
    "InverterConfig",
    "LoadConfig",
    "PVConfig",
    "PVInverterConfig",
    "SimDeviceConfig",
    "SunSpecDeviceConfig",
    "SunSpecBatteryConfig",
    "SunSpecGridConfig",
    "SunSpecPVConfig",
    "TLSConfig",
    "UPSConfig",
    "device_mappings",
    "validate_devices",
]


class DeviceConfigError(UserError, ValueError):
    """A device config field is missing, of the wrong type or out of range. ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field

    @classmethod
    def from_validation(cls, exc: ValidationError, prefix: str = "") -> DeviceConfigError:
        """The first error of ``exc`` as one line naming its field."""
        line = error_lines(exc, prefix=prefix, drop=_TAGS)[0]
        field, _, message = line.partition(": ")
        return cls(field, message)


# Strict: a number must be a number (not ``true`` or ``"5"``); ints are accepted where floats are.
Num = Annotated[float, Strict()]
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
Text = Annotated[str, Strict(), Field(min_length=1)]


def _f(default: Any = ..., unit: str = "", doc: str = "", **kw: Any) -> Any:
    """A field with its unit (for the generated reference) and meaning."""
    return Field(default, description=doc, json_schema_extra={"unit": unit} if unit else None, **kw)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --------------------------------------------------------------------------- nested parts


class InverterConfig(_Model):
    """The bidirectional inverter of a storage device."""

    rated_w: Num | None = _f(None, "W", "AC rating (default: the device's largest power limit)", gt=0)
    efficiency: Num = _f(0.97, "", "one-way conversion efficiency", gt=0, le=1)
    ramp_w_per_s: Num = _f(float("inf"), "W/s", "largest change of AC power per second (default: no limit)",
                           gt=0, allow_inf_nan=True)

    @field_validator("ramp_w_per_s")
    @classmethod
    def _not_nan(cls, v: float) -> float:
        if v != v:
            raise PydanticCustomError("finite_number", "must be a number, got NaN")
        return v


class PVInverterConfig(InverterConfig):
    """The inverter of a PV array."""

    rated_w: Num | None = _f(None, "W", "AC rating (default: the array's peak_w)", gt=0)
    efficiency: Num = _f(0.96, "", "one-way conversion efficiency", gt=0, le=1)


class TLSConfig(_Model):
    """Mutual TLS for Modbus TCP (all three files required; the driver fails closed)."""

    ca_file: Text = _f(doc="CA certificate that signed the device's certificate")
    cert_file: Text = _f(doc="the agent's client certificate")
    key_file: Text = _f(doc="the agent's client key")


class FrequencyTraceConfig(_Model):
    """A replayed measured frequency (sim grid; ``docs/fleet.md``)."""

    base: Text = _f("gb_normal_day", "", "trace replayed all day: a shipped name or a CSV file (t_s, hz)")
    start_ts: Num = _f(0.0, "s", "clock time of the trace's first sample")
    loop: Bool = _f(True, "", "loop the base trace daily")
    event: Text | None = _f(None, "", "trace that overrides the base from event_ts on (e.g. gb_loss_of_infeed)")
    event_ts: Num | None = _f(None, "s", "clock time the event starts")

    @model_validator(mode="after")
    def _loads(self) -> FrequencyTraceConfig:
        from agent.devices.frequency_trace import trace_from_spec

        try:
            trace_from_spec(self.model_dump())
        except (ValueError, TypeError, OSError) as exc:
            raise PydanticCustomError("trace", "{message}", {"message": str(exc)}) from exc
        return self


# --------------------------------------------------------------------------- sim devices


class _Device(_Model):
    id: Text | None = _f(None, "", "unique device id (default: type + index, e.g. battery1)")
    driver: Literal["sim"] = _f("sim", "", "which driver talks to the device: sim or sunspec")
    writable: Bool = _f(True, "", "allow setpoint writes")


class _Store(_Device):
    initial_soc: Num = _f(0.5, "0..1", "state of charge at start", ge=0, le=1)
    soc_min: Num = _f(0.05, "0..1", "never discharge below (hardware floor)", ge=0, le=1)
    soc_max: Num = _f(0.95, "0..1", "never charge above (hardware ceiling)", ge=0, le=1)
    inverter: InverterConfig = _f(default_factory=InverterConfig,
                                  doc="bidirectional inverter: rated_w, efficiency, ramp_w_per_s")

    def largest_w(self) -> float:
        raise NotImplementedError

    @model_validator(mode="after")
    def _window(self) -> _Store:
        if self.soc_min >= self.soc_max:
            raise field_error("soc_min", f"must be < soc_max ({self.soc_max:g})")
        if not self.soc_min <= self.initial_soc <= self.soc_max:
            raise field_error("initial_soc",
                              f"must be within [soc_min, soc_max] = [{self.soc_min:g}, {self.soc_max:g}]")
        if self.inverter.rated_w is None:
            self.inverter = self.inverter.model_copy(update={"rated_w": float(self.largest_w())})
        return self


class _Cells(_Store):
    capacity_wh: Num = _f(..., "Wh", "nameplate energy capacity", gt=0)
    max_charge_w: Num = _f(..., "W", "largest DC charge power", gt=0)
    max_discharge_w: Num = _f(..., "W", "largest DC discharge power", gt=0)
    round_trip_efficiency: Num = _f(0.92, "", "DC round-trip efficiency of the cells (< 1)", gt=0, lt=1)
    self_discharge_per_day: Num = _f(0.002, "1/day", "fraction of stored energy lost per day at rest", ge=0, lt=1)
    soh: Num = _f(1.0, "0..1", "state of health: usable / nameplate", gt=0, le=1)
    cycle_fade: Num = _f(5e-5, "1/cycle", "SoH lost per full equivalent cycle", ge=0, le=0.01)
    temperature_c: Num = _f(25.0, "°C", "cell temperature at start", ge=-40, le=80)
    ambient_c: Num = _f(25.0, "°C", "ambient temperature", ge=-40, le=60)
    temp_min_c: Num = _f(-10.0, "°C", "no power below", ge=-40, le=80)
    temp_max_c: Num = _f(45.0, "°C", "no power above", ge=-40, le=80)
    thermal_mass_j_per_k: Num = _f(60_000.0, "J/K", "heat capacity of the pack", gt=0)
    thermal_resistance_k_per_w: Num = _f(0.05, "K/W", "pack to ambient", gt=0)

    def largest_w(self) -> float:
        return max(self.max_charge_w, self.max_discharge_w)

    @model_validator(mode="after")
    def _temperatures(self) -> _Cells:
        if self.temp_min_c >= self.temp_max_c:
            raise field_error("temp_min_c", f"must be < temp_max_c ({self.temp_max_c:g})")
        return self


class BatteryConfig(_Cells):
    """A battery: a DC store behind its own bidirectional inverter."""

    type: Literal["battery"]


class UPSConfig(_Cells):
    """A UPS: a battery with its own reserve (only an outage may use it) and a takeover delay."""

    type: Literal["ups"]
    round_trip_efficiency: Num = _f(0.90, "", "DC round trip (< 1)", gt=0, lt=1)
    self_discharge_per_day: Num = _f(0.003, "1/day", "loss at rest", ge=0, lt=1)
    thermal_mass_j_per_k: Num = _f(40_000.0, "J/K", "heat capacity", gt=0)
    reserve_soc: Num = _f(0.8, "0..1", "UPS's own reserve: only an outage may use it", ge=0, le=1)
    takeover_s: Num = _f(2.0, "s", "delay before the UPS carries load in an outage", ge=0, le=3600)
    initial_soc: Num = _f(1.0, "0..1", "state of charge at start", ge=0, le=1)
    soc_max: Num = _f(1.0, "0..1", "never charge above (kept full for backup)", ge=0, le=1)


class FlywheelConfig(_Store):
    """A flywheel (kinetic energy storage): high power, standing losses that drain it in hours."""

    type: Literal["flywheel"]
    capacity_wh: Num = _f(7_500.0, "Wh", "usable kinetic energy (KESU: 5-10 kWh)", gt=0)
    max_power_w: Num = _f(100_000.0, "W", "charge and discharge power limit", gt=0)
    efficiency: Num = _f(0.95, "", "one-way motor/generator efficiency", gt=0, le=1)
    standing_loss_per_h: Num = _f(0.25, "1/h", "fraction of stored energy lost per hour spinning (drains in hours)",
                                  gt=0, lt=1)

    def largest_w(self) -> float:
        return self.max_power_w


class PVConfig(_Device):
    """A PV array and its inverter; output from a precomputed pvlib TMY3 profile (real irradiance)."""

    type: Literal["pv"]
    peak_w: Num = _f(..., "Wp", "DC nameplate of the array", gt=0)
    profile: Literal["greensboro_nc", "sand_point_ak"] = _f("greensboro_nc", "", "precomputed pvlib TMY3 profile")
    utc_offset_h: Num | None = _f(None, "h", "local standard time (default: the profile's)", ge=-14, le=14)
    inverter: PVInverterConfig = _f(default_factory=PVInverterConfig,
                                    doc="PV inverter: rated_w (default peak_w), efficiency, ramp_w_per_s")

    @model_validator(mode="after")
    def _rating(self) -> PVConfig:
        if self.inverter.rated_w is None:
            self.inverter = self.inverter.model_copy(update={"rated_w": float(self.peak_w)})
        return self


LOAD_PEAK_W = {"household": 5_000.0, "commercial": 40_000.0, "datacentre": 12_000.0}
LOAD_SHEDDABLE = {"household": 0.3, "commercial": 0.2, "datacentre": 0.0}


class LoadConfig(_Device):
    """A synthetic load profile (deterministic per seed); part of it may be shed."""

    type: Literal["load"]
    profile: Literal["household", "commercial", "datacentre"] = _f("household", "", "synthetic load profile")
    peak_w: Num | None = _f(None, "W", "scale (default 5 kW / 40 kW / 12 kW per profile)", gt=0)
    sheddable_fraction: Num | None = _f(None, "0..1", "part of the load that may be shed (default 0.3 / 0.2 / 0.0)",
                                        ge=0, le=1)
    utc_offset_h: Num | None = _f(None, "h", "local time of the profile (default: the site's)", ge=-14, le=14)

    @model_validator(mode="after")
    def _profile_defaults(self) -> LoadConfig:
        if self.peak_w is None:
            self.peak_w = LOAD_PEAK_W[self.profile]
        if self.sheddable_fraction is None:
            self.sheddable_fraction = LOAD_SHEDDABLE[self.profile]
        return self


class GridConfig(_Device):
    """The grid connection: limits, outages, frequency; the bus's slack and the site meter."""

    type: Literal["grid"]
    import_limit_w: Num = _f(25_000.0, "W", "largest import at the connection", gt=0)
    export_limit_w: Num = _f(25_000.0, "W", "largest export at the connection", ge=0)
    nominal_hz: Num = _f(50.0, "Hz", "nominal frequency", ge=45, le=65)
    outages: list[tuple[Num, Num]] = _f(default_factory=list, doc="scheduled outages: list of [start_ts, end_ts] (sim)")
    frequency_trace: FrequencyTraceConfig | None = _f(None, "", "replayed measured frequency (sim); see docs/fleet.md")

    @field_validator("outages")
    @classmethod
    def _windows(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for j, (start, end) in enumerate(v):
            if end <= start:
                raise field_error(f"[{j}]", "end_ts must be > start_ts")
        return [(float(a), float(b)) for a, b in v]


# --------------------------------------------------------------------------- sunspec devices


class _SunSpec(_Model):
    """A SunSpec device over Modbus TCP: ratings come from the device; the config supplies what it
    lacks (a power figure in the config can only lower the device's rating)."""

    id: Text | None = _f(None, "", "unique device id (default: type + index, e.g. battery1)")
    driver: Literal["sunspec"]
    writable: Bool = _f(False, "", "allow setpoint writes (off unless the owner turns it on)")
    host: Text = _f(..., "", "Modbus TCP host")
    port: Int = _f(502, "", "Modbus TCP port (802 with TLS)", ge=1, le=65535)
    unit_id: Int = _f(1, "", "Modbus unit id", ge=0, le=255)
    base_addr: Int | None = _f(None, "", "SunSpec base address (default: try 40000, 0, 50000)", ge=0, le=65535)
    timeout_s: Num = _f(1.0, "s", "per request", gt=0)
    tls: TLSConfig | None = _f(None, "", "mutual TLS: ca_file, cert_file, key_file (all required; fails closed)")


class SunSpecBatteryConfig(_SunSpec):
    """A SunSpec storage inverter (models 701-713 or 124)."""

    type: Literal["battery"]
    capacity_wh: Num | None = _f(None, "Wh", "energy capacity, when the device has no 713/120 WHRtg", gt=0)
    rated_w: Num | None = _f(None, "W", "AC power rating, when the device reports none (or lower)", gt=0)
    max_charge_w: Num | None = _f(None, "W", "largest charge power (or lower than the device's)", gt=0)
    max_discharge_w: Num | None = _f(None, "W", "largest discharge power (or lower than the device's)", gt=0)


class SunSpecPVConfig(_SunSpec):
    """A SunSpec PV inverter (curtailment through model 123 or 704)."""

    type: Literal["pv"]
    rated_w: Num | None = _f(None, "W", "AC power rating, when the device reports none (or lower)", gt=0)


class SunSpecGridConfig(_SunSpec):
    """A SunSpec meter at the grid connection (read only)."""

    type: Literal["grid"]
    import_limit_w: Num | None = _f(None, "W", "largest import at the connection", gt=0)
    export_limit_w: Num | None = _f(None, "W", "largest export at the connection", ge=0)

    @model_validator(mode="after")
    def _meter(self) -> SunSpecGridConfig:
        if self.writable:
            raise field_error("writable", "a sunspec grid meter is read-only")
        if (self.import_limit_w is None) != (self.export_limit_w is None):
            raise field_error("import_limit_w", "give both import_limit_w and export_limit_w")
        return self


# --------------------------------------------------------------------------- the union

#: tag -> model. A sim device's tag is its type; a SunSpec device's is ``<type>.sunspec``.
DEVICE_MODELS: dict[str, type[BaseModel]] = {
    "battery": BatteryConfig,
    "flywheel": FlywheelConfig,
    "ups": UPSConfig,
    "pv": PVConfig,
    "load": LoadConfig,
    "grid": GridConfig,
    "battery.sunspec": SunSpecBatteryConfig,
    "pv.sunspec": SunSpecPVConfig,
    "grid.sunspec": SunSpecGridConfig,
}
_TYPES = ("battery", "flywheel", "ups", "pv", "load", "grid")
_TAGS = frozenset(DEVICE_MODELS)


def _tag(value: Any) -> str | None:
    if isinstance(value, dict):
        dtype, driver = value.get("type"), value.get("driver", "sim")
    else:
        dtype, driver = getattr(value, "type", None), getattr(value, "driver", None)
    tag = dtype if driver == "sim" else f"{dtype}.{driver}"
    return tag if isinstance(tag, str) and tag in DEVICE_MODELS else None


def _known(value: Any) -> Any:
    """Name the field when a device's type/driver pair has no model (before the union runs)."""
    if _tag(value) is not None:
        return value
    if not isinstance(value, dict):
        raise field_error("", f"must be a mapping with a type, got {value!r}")
    dtype, driver = value.get("type"), value.get("driver", "sim")
    if dtype not in _TYPES:
        raise field_error("type", f"must be one of {', '.join(_TYPES)}, got {dtype!r}")
    if driver not in ("sim", "sunspec"):
        raise field_error("driver", f"must be one of sim, sunspec, got {driver!r}")
    raise field_error("driver", f"sunspec drives battery and pv devices and reads grid meters, not {dtype}")


DeviceConfig = Annotated[
    Union[tuple(Annotated[model, Tag(tag)] for tag, model in DEVICE_MODELS.items())],  # noqa: UP007
    Discriminator(_tag),
    BeforeValidator(_known),
]
"""One device of the ``devices:`` list (the union of :data:`DEVICE_MODELS`)."""

SimDeviceConfig = Union[BatteryConfig, FlywheelConfig, UPSConfig, PVConfig, LoadConfig, GridConfig]  # noqa: UP007
SunSpecDeviceConfig = Union[SunSpecBatteryConfig, SunSpecPVConfig, SunSpecGridConfig]  # noqa: UP007
AnyDevice = Union[BatteryConfig, FlywheelConfig, UPSConfig, PVConfig, LoadConfig, GridConfig,  # noqa: UP007
                  SunSpecBatteryConfig, SunSpecPVConfig, SunSpecGridConfig]


def _check_list(devices: list[Any]) -> list[Any]:
    """Default ids (type + index), unique ids, at most one grid connection."""
    if not devices:
        raise field_error("", "must name at least one device")
    counts: dict[str, int] = {}
    seen: dict[str, int] = {}
    out = []
    grids = 0
    for i, dev in enumerate(devices):
        counts[dev.type] = counts.get(dev.type, 0) + 1
        if dev.id is None:
            dev = dev.model_copy(update={"id": f"{dev.type}{counts[dev.type]}"})
        if dev.id in seen:
            raise field_error(f"[{i}].id", f"duplicate id {dev.id!r} (also devices[{seen[dev.id]}])")
        seen[dev.id] = i
        if dev.type == "grid":
            grids += 1
            if grids > 1:
                raise field_error(f"[{i}].type", "a site has at most one grid connection")
        out.append(dev)
    return out


Devices = Annotated[list[DeviceConfig], AfterValidator(_check_list)]
"""The ``devices:`` list: each device validated by its model, ids filled and unique."""

_ADAPTER: TypeAdapter[list[AnyDevice]] = TypeAdapter(Devices)


def device_mappings(devices: list[AnyDevice]) -> list[dict[str, Any]]:
    """Devices as the mappings a site config file holds (the fields given or derived, not the
    defaults), e.g. for a config the demo writes."""
    return [d.model_dump(mode="json", exclude_defaults=True) for d in devices]


def validate_devices(devices: Any) -> list[AnyDevice]:
    """Validate a ``devices:`` list (mappings or models); return the models with defaults filled.

    Raises :class:`DeviceConfigError` naming the first bad field, e.g. ``devices[1].capacity_wh``.
    """
    try:
        return _ADAPTER.validate_python(devices)
    except ValidationError as exc:
        raise DeviceConfigError.from_validation(exc, prefix="devices") from exc
