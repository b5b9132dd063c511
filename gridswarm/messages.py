"""Bodies of the envelope kinds (DESIGN §5), validated on receipt.

Units as everywhere (DESIGN §6): W, Wh, SoC 0..1, seconds since the UTC epoch; device/site
sign + = delivering to the bus / exporting. Addresses are checksummed Ethereum addresses.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gridswarm.envelope import MalformedEnvelope

MAX_WH = 2**32 - 1
MAX_PRICE = 2**24 - 1


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Hello(_Body):
    address: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    site: str = Field(min_length=1, max_length=64)
    software: str = Field(default="gridswarm-agent", max_length=64)


class Welcome(_Body):
    address: str
    market: str
    chain_id: int


class IntervalNotice(_Body):
    """The coordinator opened an interval for orders."""

    interval: int = Field(ge=0)
    delivery_start: float
    delivery_end: float
    gate_close: float


class DispatchFill(_Body):
    order_id: int = Field(ge=0)
    side: str = Field(pattern="^(bid|offer)$")
    qty_wh: int = Field(ge=0, le=MAX_WH)
    price: int = Field(ge=0)


class Dispatch(_Body):
    """A schedule for one delivery interval: target net site export (W, + = export)."""

    interval: int = Field(ge=0)
    start: float
    end: float
    export_w: float = Field(ge=-1e9, le=1e9)
    fills: list[DispatchFill] = Field(max_length=10_000)


class Arm(_Body):
    """Grid-service participation (K4): arm local droop frequency response, executed by the
    agent itself (the coordinator cannot be in a sub-second loop). ``armed=False`` disarms."""

    armed: bool = True
    droop: float = Field(default=0.04, gt=0.0, le=0.5)
    deadband_hz: float = Field(default=0.02, ge=0.0, le=1.0)
    max_power_w: float | None = Field(default=None, gt=0.0)
    mode: str = Field(default="grid_support", pattern="^(standby|grid_support|emergency)$")
    until_ts: float | None = None


class Ack(_Body):
    kind: str
    seq: int = Field(ge=0)
    interval: int | None = None
    ok: bool = True
    reason: str = ""


class Meter(_Body):
    """A signed meter reading for one interval; ``signature`` is the EIP-712 one (hex)."""

    interval: int = Field(ge=0)
    exported_wh: int = Field(ge=0, le=2**64 - 1)
    imported_wh: int = Field(ge=0, le=2**64 - 1)
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$")


class Telemetry(_Body):
    ts: float
    net_export_w: float
    soc: float | None = Field(default=None, ge=0.0, le=1.0)
    devices: dict[str, dict[str, float | str | None]] = Field(default_factory=dict, max_length=64)
    record_id: int = Field(ge=0)


class Alarm(_Body):
    code: str = Field(max_length=64)
    message: str = Field(max_length=1024)


class Config(_Body):
    """Remote configuration from an operator: new control settings for the site. The agent
    checks them against its own safety envelope and answers with a ``config_result``."""

    config_id: int = Field(ge=0)
    settings: dict[str, bool | int | float | str] = Field(min_length=1, max_length=32)


class ConfigResult(_Body):
    """The agent's answer to a ``config``: applied, or refused with the reason."""

    config_id: int = Field(ge=0)
    ok: bool
    reason: str = Field(default="", max_length=1024)
    applied: dict[str, bool | int | float | str] = Field(default_factory=dict, max_length=32)


class Error(_Body):
    reason: str
    message: str
    seq: int | None = None


SCHEMAS: dict[str, type[_Body]] = {
    "hello": Hello,
    "welcome": Welcome,
    "interval": IntervalNotice,
    "dispatch": Dispatch,
    "ack": Ack,
    "arm": Arm,
    "meter": Meter,
    "telemetry": Telemetry,
    "alarm": Alarm,
    "error": Error,
    "config": Config,
    "config_result": ConfigResult,
}


def validate_body(kind: str, body: dict[str, Any]) -> _Body:
    """Parse a body for its kind; raise :class:`MalformedEnvelope` naming the bad field."""
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise MalformedEnvelope(f"no body schema for kind {kind!r}")
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "body"
        raise MalformedEnvelope(f"{kind} body field {loc!r}: {first['msg']}") from exc
