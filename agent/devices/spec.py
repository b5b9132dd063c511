"""The ``devices:`` section of a site config: field tables, defaults and validation.

The tables below are data (one row per field: type, default, constraint, unit, meaning) so the
same rows validate a config, fill defaults and document the section (``docs/agent-devices.md``).
A wrong field gets an error that names it, e.g. ``devices[1].capacity_wh: must be > 0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gridswarm.errors import UserError

__all__ = ["DEVICE_FIELDS", "SUNSPEC_FIELDS", "SUNSPEC_FIGURES", "DeviceConfigError", "Field", "validate_devices"]


class DeviceConfigError(UserError, ValueError):
    """A device config field is missing, of the wrong type or out of range. ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


REQUIRED = object()


@dataclass(frozen=True)
class Field:
    kind: str  # "float", "int", "bool", "str", "choice", "dict", "list"
    default: Any = REQUIRED
    check: Callable[[Any], str | None] | None = None
    unit: str = ""
    doc: str = ""
    choices: tuple[str, ...] = ()


def gt(lo: float) -> Callable[[Any], str | None]:
    return lambda v: None if v > lo else f"must be > {lo:g}"


def ge(lo: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= lo else f"must be >= {lo:g}"


def within(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Callable[[Any], str | None]:
    def check(v: float) -> str | None:
        ok_lo = v > lo if lo_open else v >= lo
        ok_hi = v < hi if hi_open else v <= hi
        if ok_lo and ok_hi:
            return None
        return f"must be within {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    return check


_INVERTER = "dict"

_COMMON: dict[str, Field] = {
    "id": Field("str", None, doc="unique device id (default: type + index)"),
    "driver": Field("choice", "sim", choices=("sim", "sunspec"), doc="which driver talks to the device"),
    "writable": Field("bool", None, doc="allow setpoint writes (default: true for sim, false for sunspec)"),
}

_INVERTER_FIELDS: dict[str, Field] = {
    "rated_w": Field("float", None, gt(0), "W", "AC rating (default: the device's largest power limit)"),
    "efficiency": Field("float", 0.97, within(0, 1, lo_open=True), "", "one-way conversion efficiency"),
    "ramp_w_per_s": Field("float", math.inf, gt(0), "W/s", "largest change of AC power per second"),
}

_STORE_COMMON: dict[str, Field] = {
    "initial_soc": Field("float", 0.5, within(0, 1), "0..1", "state of charge at start"),
    "soc_min": Field("float", 0.05, within(0, 1), "0..1", "never discharge below (hardware floor)"),
    "soc_max": Field("float", 0.95, within(0, 1), "0..1", "never charge above (hardware ceiling)"),
    "inverter": Field("dict", None, doc="bidirectional inverter: rated_w, efficiency, ramp_w_per_s"),
}

DEVICE_FIELDS: dict[str, dict[str, Field]] = {
    "battery": {
        "capacity_wh": Field("float", REQUIRED, gt(0), "Wh", "nameplate energy capacity"),
        "max_charge_w": Field("float", REQUIRED, gt(0), "W", "largest DC charge power"),
        "max_discharge_w": Field("float", REQUIRED, gt(0), "W", "largest DC discharge power"),
        "round_trip_efficiency": Field("float", 0.92, within(0, 1, lo_open=True, hi_open=True), "",
                                       "DC round-trip efficiency of the cells (< 1)"),
        "self_discharge_per_day": Field("float", 0.002, within(0, 1, hi_open=True), "1/day",
                                        "fraction of stored energy lost per day at rest"),
        "soh": Field("float", 1.0, within(0, 1, lo_open=True), "0..1", "state of health: usable / nameplate"),
        "cycle_fade": Field("float", 5e-5, within(0, 0.01), "1/cycle", "SoH lost per full equivalent cycle"),
        "temperature_c": Field("float", 25.0, within(-40, 80), "°C", "cell temperature at start"),
        "ambient_c": Field("float", 25.0, within(-40, 60), "°C", "ambient temperature"),
        "temp_min_c": Field("float", -10.0, within(-40, 80), "°C", "no power below"),
        "temp_max_c": Field("float", 45.0, within(-40, 80), "°C", "no power above"),
        "thermal_mass_j_per_k": Field("float", 60_000.0, gt(0), "J/K", "heat capacity of the pack"),
        "thermal_resistance_k_per_w": Field("float", 0.05, gt(0), "K/W", "pack to ambient"),
        **_STORE_COMMON,
    },
    "flywheel": {
        "capacity_wh": Field("float", 7_500.0, gt(0), "Wh", "usable kinetic energy (KESU: 5-10 kWh)"),
        "max_power_w": Field("float", 100_000.0, gt(0), "W", "charge and discharge power limit"),
        "efficiency": Field("float", 0.95, within(0, 1, lo_open=True), "", "one-way motor/generator efficiency"),
        "standing_loss_per_h": Field("float", 0.25, within(0, 1, lo_open=True, hi_open=True), "1/h",
                                     "fraction of stored energy lost per hour spinning (drains in hours)"),
        **_STORE_COMMON,
    },
    "ups": {
        "capacity_wh": Field("float", REQUIRED, gt(0), "Wh", "nameplate energy capacity"),
        "max_charge_w": Field("float", REQUIRED, gt(0), "W", "largest DC charge power"),
        "max_discharge_w": Field("float", REQUIRED, gt(0), "W", "largest DC discharge power"),
        "round_trip_efficiency": Field("float", 0.90, within(0, 1, lo_open=True, hi_open=True), "", "DC round trip"),
        "self_discharge_per_day": Field("float", 0.003, within(0, 1, hi_open=True), "1/day", "loss at rest"),
        "soh": Field("float", 1.0, within(0, 1, lo_open=True), "0..1", "state of health"),
        "cycle_fade": Field("float", 5e-5, within(0, 0.01), "1/cycle", "SoH lost per full equivalent cycle"),
        "temperature_c": Field("float", 25.0, within(-40, 80), "°C", "cell temperature at start"),
        "ambient_c": Field("float", 25.0, within(-40, 60), "°C", "ambient temperature"),
        "temp_min_c": Field("float", -10.0, within(-40, 80), "°C", "no power below"),
        "temp_max_c": Field("float", 45.0, within(-40, 80), "°C", "no power above"),
        "thermal_mass_j_per_k": Field("float", 40_000.0, gt(0), "J/K", "heat capacity"),
        "thermal_resistance_k_per_w": Field("float", 0.05, gt(0), "K/W", "to ambient"),
        "reserve_soc": Field("float", 0.8, within(0, 1), "0..1", "UPS's own reserve: only an outage may use it"),
        "takeover_s": Field("float", 2.0, within(0, 3600), "s", "delay before the UPS carries load in an outage"),
        **{**_STORE_COMMON, "initial_soc": Field("float", 1.0, within(0, 1), "0..1", "state of charge at start"),
           "soc_max": Field("float", 1.0, within(0, 1), "0..1", "never charge above (kept full for backup)")},
    },
    "pv": {
        "peak_w": Field("float", REQUIRED, gt(0), "Wp", "DC nameplate of the array"),
        "profile": Field("choice", "greensboro_nc", choices=("greensboro_nc", "sand_point_ak"),
                         doc="precomputed pvlib TMY3 profile (real irradiance)"),
        "utc_offset_h": Field("float", None, within(-14, 14), "h", "local standard time (default: the profile's)"),
        "inverter": Field("dict", None, doc="PV inverter: rated_w (default peak_w), efficiency (0.96)"),
    },
    "load": {
        "profile": Field("choice", "household", choices=("household", "commercial", "datacentre"),
                         doc="synthetic load profile"),
        "peak_w": Field("float", None, gt(0), "W", "scale (default 5 kW / 40 kW / 12 kW per profile)"),
        "sheddable_fraction": Field("float", None, within(0, 1), "0..1",
                                    "part of the load that may be shed (default 0.3 / 0.2 / 0.0)"),
        "utc_offset_h": Field("float", None, within(-14, 14), "h", "local time of the profile (default: site's)"),
    },
    "grid": {
        "import_limit_w": Field("float", 25_000.0, gt(0), "W", "largest import at the connection"),
        "export_limit_w": Field("float", 25_000.0, ge(0), "W", "largest export at the connection"),
        "nominal_hz": Field("float", 50.0, within(45, 65), "Hz", "nominal frequency"),
        "outages": Field("list", [], doc="scheduled outages: list of [start_ts, end_ts] (sim)"),
        "frequency_trace": Field("dict", None, doc="replayed frequency (sim): base, start_ts, loop, event, "
                                 "event_ts; see docs/fleet.md"),
    },
}

SUNSPEC_FIELDS: dict[str, Field] = {
    "host": Field("str", REQUIRED, doc="Modbus TCP host"),
    "port": Field("int", 502, within(1, 65535), "", "Modbus TCP port (802 with TLS)"),
    "unit_id": Field("int", 1, within(0, 255), "", "Modbus unit id"),
    "base_addr": Field("int", None, within(0, 65535), "", "SunSpec base address (default: try 40000, 0, 50000)"),
    "timeout_s": Field("float", 1.0, gt(0), "s", "per request"),
    "tls": Field("dict", None, doc="mutual TLS: ca_file, cert_file, key_file (all required; fails closed)"),
}

# figures a SunSpec device may lack, supplied by the config (the device's own figures win; a power
# figure in the config can only lower the device's rating)
SUNSPEC_FIGURES: dict[str, dict[str, Field]] = {
    "battery": {
        "capacity_wh": Field("float", None, gt(0), "Wh", "energy capacity, when the device has no 713/120 WHRtg"),
        "rated_w": Field("float", None, gt(0), "W", "AC power rating, when the device reports none (or lower)"),
        "max_charge_w": Field("float", None, gt(0), "W", "largest charge power (or lower than the device's)"),
        "max_discharge_w": Field("float", None, gt(0), "W", "largest discharge power (or lower than the device's)"),
    },
    "pv": {
        "rated_w": Field("float", None, gt(0), "W", "AC power rating, when the device reports none (or lower)"),
    },
    "grid": {
        "import_limit_w": Field("float", None, gt(0), "W", "largest import at the connection"),
        "export_limit_w": Field("float", None, ge(0), "W", "largest export at the connection"),
    },
}

_DEFAULT_LOAD_PEAK = {"household": 5_000.0, "commercial": 40_000.0, "datacentre": 12_000.0}
_DEFAULT_SHEDDABLE = {"household": 0.3, "commercial": 0.2, "datacentre": 0.0}


def _coerce(name: str, f: Field, value: Any) -> Any:
    if f.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DeviceConfigError(name, f"must be a number, got {value!r}")
        value = float(value)
        if math.isnan(value):
            raise DeviceConfigError(name, "must be a number, got NaN")
    elif f.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise DeviceConfigError(name, f"must be an integer, got {value!r}")
    elif f.kind == "bool":
        if not isinstance(value, bool):
            raise DeviceConfigError(name, f"must be true or false, got {value!r}")
    elif f.kind == "str":
        if not isinstance(value, str) or not value:
            raise DeviceConfigError(name, f"must be a non-empty string, got {value!r}")
    elif f.kind == "choice":
        if value not in f.choices:
            raise DeviceConfigError(name, f"must be one of {', '.join(f.choices)}, got {value!r}")
    elif f.kind == "dict":
        if not isinstance(value, Mapping):
            raise DeviceConfigError(name, f"must be a mapping, got {value!r}")
    elif f.kind == "list":
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise DeviceConfigError(name, f"must be a list, got {value!r}")
    if f.check is not None and f.kind in ("float", "int"):
        problem = f.check(value)
        if problem:
            raise DeviceConfigError(name, problem)
    return value


def validate_fields(prefix: str, raw: Mapping[str, Any], fields: Mapping[str, Field]) -> dict[str, Any]:
    """Check ``raw`` against ``fields``; return a dict with defaults filled in."""
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise DeviceConfigError(f"{prefix}.{unknown[0]}", f"unknown field (known: {', '.join(sorted(fields))})")
    out: dict[str, Any] = {}
    for name, f in fields.items():
        if name in raw and raw[name] is not None:
            out[name] = _coerce(f"{prefix}.{name}", f, raw[name])
        elif f.default is REQUIRED:
            raise DeviceConfigError(f"{prefix}.{name}", "is required")
        else:
            out[name] = list(f.default) if isinstance(f.default, list) else f.default
    return out


def validate_devices(devices: Any) -> list[dict[str, Any]]:
    """Validate the ``devices:`` list; return one normalised dict per device (all defaults filled).

    Every returned dict has ``type``, ``id``, ``driver``, ``writable`` and its type's fields;
    ``inverter`` is a normalised dict for storage and PV; sunspec devices get a ``sunspec`` dict.
    """
    if not isinstance(devices, Sequence) or isinstance(devices, (str, bytes)):
        raise DeviceConfigError("devices", "must be a list of device mappings")
    if not devices:
        raise DeviceConfigError("devices", "must name at least one device")
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    counts: dict[str, int] = {}
    for i, raw in enumerate(devices):
        prefix = f"devices[{i}]"
        if not isinstance(raw, Mapping):
            raise DeviceConfigError(prefix, f"must be a mapping, got {raw!r}")
        dtype = raw.get("type")
        if dtype not in DEVICE_FIELDS:
            raise DeviceConfigError(f"{prefix}.type", f"must be one of {', '.join(DEVICE_FIELDS)}, got {dtype!r}")
        driver = raw.get("driver", "sim")
        fields: dict[str, Field] = {"type": Field("str"), **_COMMON, **DEVICE_FIELDS[dtype]}
        if driver == "sunspec":
            if dtype not in SUNSPEC_FIGURES:
                raise DeviceConfigError(f"{prefix}.driver",
                                        f"sunspec drives battery and pv devices and reads grid meters, not {dtype}")
            # a sunspec device reads its ratings from the device; the config supplies what it lacks
            fields = {"type": Field("str"), **_COMMON, **SUNSPEC_FIELDS, **SUNSPEC_FIGURES[dtype]}
        spec = validate_fields(prefix, raw, fields)
        counts[dtype] = counts.get(dtype, 0) + 1
        if spec["id"] is None:
            spec["id"] = f"{dtype}{counts[dtype]}"
        if spec["id"] in seen:
            raise DeviceConfigError(f"{prefix}.id", f"duplicate id {spec['id']!r} (also devices[{seen[spec['id']]}])")
        seen[spec["id"]] = i
        if spec["writable"] is None:
            spec["writable"] = driver == "sim"
        if driver == "sunspec":
            if dtype == "grid" and spec["writable"]:
                raise DeviceConfigError(f"{prefix}.writable", "a sunspec grid meter is read-only")
            if dtype == "grid" and (spec["import_limit_w"] is None) != (spec["export_limit_w"] is None):
                raise DeviceConfigError(f"{prefix}.import_limit_w", "give both import_limit_w and export_limit_w")
            tls = spec.get("tls")
            if tls is not None:
                spec["tls"] = validate_fields(f"{prefix}.tls", tls, {
                    "ca_file": Field("str"), "cert_file": Field("str"), "key_file": Field("str"),
                })
            out.append(spec)
            continue
        _check_type(prefix, dtype, spec)
        out.append(spec)
    kinds = [d["type"] for d in out]
    if kinds.count("grid") > 1:
        raise DeviceConfigError(f"devices[{_nth(kinds, 'grid', 2)}].type", "a site has at most one grid connection")
    return out


def _nth(items: list[str], value: str, n: int) -> int:
    seen = 0
    for i, item in enumerate(items):
        if item == value:
            seen += 1
            if seen == n:
                return i
    return -1


def _check_type(prefix: str, dtype: str, spec: dict[str, Any]) -> None:
    if dtype in ("battery", "flywheel", "ups"):
        if spec["soc_min"] >= spec["soc_max"]:
            raise DeviceConfigError(f"{prefix}.soc_min", f"must be < soc_max ({spec['soc_max']:g})")
        if not spec["soc_min"] <= spec["initial_soc"] <= spec["soc_max"]:
            raise DeviceConfigError(f"{prefix}.initial_soc",
                                    f"must be within [soc_min, soc_max] = [{spec['soc_min']:g}, {spec['soc_max']:g}]")
        if dtype != "flywheel" and spec["temp_min_c"] >= spec["temp_max_c"]:
            raise DeviceConfigError(f"{prefix}.temp_min_c", f"must be < temp_max_c ({spec['temp_max_c']:g})")
        largest = spec["max_power_w"] if dtype == "flywheel" else max(spec["max_charge_w"], spec["max_discharge_w"])
        spec["inverter"] = _inverter(prefix, spec["inverter"], largest, 0.97)
    elif dtype == "pv":
        spec["inverter"] = _inverter(prefix, spec["inverter"], spec["peak_w"], 0.96)
    elif dtype == "load":
        if spec["peak_w"] is None:
            spec["peak_w"] = _DEFAULT_LOAD_PEAK[spec["profile"]]
        if spec["sheddable_fraction"] is None:
            spec["sheddable_fraction"] = _DEFAULT_SHEDDABLE[spec["profile"]]
    elif dtype == "grid":
        outages = []
        for j, window in enumerate(spec["outages"]):
            name = f"{prefix}.outages[{j}]"
            if (not isinstance(window, Sequence) or len(window) != 2
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in window)):
                raise DeviceConfigError(name, f"must be [start_ts, end_ts], got {window!r}")
            if window[1] <= window[0]:
                raise DeviceConfigError(name, "end_ts must be > start_ts")
            outages.append((float(window[0]), float(window[1])))
        spec["outages"] = outages
        if spec.get("frequency_trace") is not None:
            from agent.devices.frequency_trace import trace_from_spec

            try:
                trace_from_spec(spec["frequency_trace"])
            except (ValueError, TypeError) as exc:
                raise DeviceConfigError(f"{prefix}.frequency_trace", str(exc)) from exc


def _inverter(prefix: str, raw: Mapping[str, Any] | None, default_rating: float, default_eff: float) -> dict[str, Any]:
    fields = dict(_INVERTER_FIELDS)
    fields["efficiency"] = Field("float", default_eff, within(0, 1, lo_open=True), "", "one-way efficiency")
    inv = validate_fields(f"{prefix}.inverter", raw or {}, fields)
    if inv["rated_w"] is None:
        inv["rated_w"] = float(default_rating)
    return inv
