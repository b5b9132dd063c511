"""Bodies of the envelope kinds (docs/architecture.md §5), validated on receipt.

Units as everywhere (docs/architecture.md §6): W, Wh, SoC 0..1, seconds since the UTC epoch; device/site
sign + = delivering to the bus / exporting. Addresses are checksummed Ethereum addresses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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
    """Grid-service participation (swarm frequency response, docs/architecture.md §1): arm local droop frequency response, executed by the
    agent itself (the coordinator cannot be in a sub-second loop). ``armed=False`` disarms.

    ``share_w``: the unit's share of the fleet's required response (W at full delivery); the
    agent refuses a share above its storage rating. ``until_ts``: the arm expires then (an arm
    already expired on receipt is refused). ``knee_hz``/``knee_fraction``: an optional knee in
    the delivery curve (GB Dynamic Containment: 5 % at 0.2 Hz), see ``docs/fleet.md``."""

    armed: bool = True
    droop: float = Field(default=0.04, gt=0.0, le=0.5, allow_inf_nan=False)
    deadband_hz: float = Field(default=0.02, ge=0.0, le=1.0, allow_inf_nan=False)
    max_power_w: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    mode: str = Field(default="grid_support", pattern="^(standby|grid_support|emergency)$")
    until_ts: float | None = Field(default=None, allow_inf_nan=False)
    share_w: float | None = Field(default=None, ge=0.0, le=1e9, allow_inf_nan=False)
    knee_hz: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    knee_fraction: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False)


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


_W = {"ge": -1e9, "le": 1e9, "allow_inf_nan": False}  # any power: finite, within +-1 GW


MAX_DRAW_HOURS = 48


def draw_between_wh(steps_w: Sequence[float], t0: float, a: float, b: float, step_s: float = 3600.0) -> float:
    """The energy (Wh) over ``[a, b)`` of a power profile: ``steps_w`` are mean powers (W) of
    consecutive steps of ``step_s`` from ``t0`` -- with hour steps, each hour's Wh, as in
    ``Telemetry.draw_ahead_wh``. Time before ``t0`` counts at the first step's power, time past
    the last step at the highest step's (no forecast says less there)."""
    if not steps_w or b <= a:
        return 0.0
    total = 0.0
    if a < t0:
        total += steps_w[0] * (min(b, t0) - a)
        a = t0
    for i in range(max(0, int((a - t0) // step_s)), len(steps_w)):
        lo, hi = max(a, t0 + step_s * i), min(b, t0 + step_s * (i + 1))
        if lo >= b:
            break
        if hi > lo:
            total += steps_w[i] * (hi - lo)
    past = t0 + step_s * len(steps_w)
    if b > past:
        total += max(steps_w) * (b - max(a, past))
    return total / 3600.0


def grant_wh_between(grant: Mapping[str, Any], a: float, b: float) -> float:
    """The part (Wh) of a virtual-battery grant's energy (``energy_wh`` spread evenly over
    ``[start, end)``) that falls in ``[a, b)``."""
    lo, hi = max(a, grant["start"]), min(b, grant["end"])
    return grant["energy_wh"] * (hi - lo) / (grant["end"] - grant["start"]) if hi > lo else 0.0


class DeviceState(_Body):
    """One device in a telemetry record (W, Wh, SoC 0..1, degC; device sign + = delivering).

    ``usable_wh``: energy above the owner's reserve (and the device's own floor) the device
    could deliver now; ``max_charge_w``/``max_discharge_w``: available power right now;
    ``rated_w``: its rating. Impossible values (NaN, SoC outside 0..1, usable energy above
    capacity, negative availability) are refused with the field's name."""

    kind: str = Field(max_length=16)
    power_w: float = Field(**_W)  # type: ignore[arg-type]
    status: str = Field(default="ok", max_length=32)
    soc: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    capacity_wh: float | None = Field(default=None, ge=0.0, le=1e10, allow_inf_nan=False)
    usable_wh: float | None = Field(default=None, ge=0.0, le=1e10, allow_inf_nan=False)
    max_charge_w: float = Field(default=0.0, ge=0.0, le=1e9, allow_inf_nan=False)
    max_discharge_w: float = Field(default=0.0, ge=0.0, le=1e9, allow_inf_nan=False)
    rated_w: float | None = Field(default=None, ge=0.0, le=1e9, allow_inf_nan=False)
    soh: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    temperature_c: float | None = Field(default=None, ge=-60.0, le=150.0, allow_inf_nan=False)
    reserve_soc: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _energy_within_capacity(self) -> DeviceState:
        if self.usable_wh is not None and self.capacity_wh is not None and self.usable_wh > self.capacity_wh + 1e-6:
            raise ValueError(f"usable_wh {self.usable_wh:g} exceeds capacity_wh {self.capacity_wh:g}")
        return self


class Telemetry(_Body):
    """A site's state: net export and SoC, each device's :class:`DeviceState`, and the grid
    frequency it measures with the frequency response it is delivering (W, device sign)."""

    ts: float = Field(allow_inf_nan=False)
    net_export_w: float = Field(**_W)  # type: ignore[arg-type]
    soc: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    devices: dict[str, DeviceState] = Field(default_factory=dict, max_length=64)
    record_id: int = Field(ge=0)
    frequency_hz: float | None = Field(default=None, ge=40.0, le=70.0, allow_inf_nan=False)
    response_w: float | None = Field(default=None, **_W)  # type: ignore[arg-type]
    emergency_opt_in: bool | None = None
    outbox_pending: int | None = Field(default=None, ge=0, le=10**9)  # the agent's unacknowledged records
    # The site's own draw (its loads less its PV, Wh) in each coming hour from ``ts``: its
    # forecast's upper 80 % bound, or its loads' rating while it has no forecast. A lender keeps
    # that much for itself (coordinator/services/fleet.py); see :func:`draw_between_wh`.
    draw_ahead_wh: list[Annotated[float, Field(ge=0.0, le=1e10, allow_inf_nan=False)]] | None = Field(
        default=None, min_length=1, max_length=MAX_DRAW_HOURS)


_FW = {"ge": 0.0, "le": 1e9, "allow_inf_nan": False}  # a forecast power: finite, 0..1 GW


class ForecastPoint(_Body):
    """One forecast of a site's mean ``series`` power (W) over ``[target_start, target_end)``,
    made ``horizon_s`` ahead, with its 80 % and 95 % prediction intervals."""

    series: str = Field(pattern="^(demand|pv)$")
    horizon_s: float = Field(gt=0.0, le=86_400.0, allow_inf_nan=False)
    target_start: float = Field(ge=0.0, le=1e11, allow_inf_nan=False)
    target_end: float = Field(ge=0.0, le=1e11, allow_inf_nan=False)
    point_w: float = Field(**_FW)  # type: ignore[arg-type]
    lower80_w: float = Field(**_FW)  # type: ignore[arg-type]
    upper80_w: float = Field(**_FW)  # type: ignore[arg-type]
    lower95_w: float = Field(**_FW)  # type: ignore[arg-type]
    upper95_w: float = Field(**_FW)  # type: ignore[arg-type]
    model: str = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _consistent(self) -> ForecastPoint:
        if not 0 < self.target_end - self.target_start <= 86_400:
            length = self.target_end - self.target_start
            raise ValueError(f"target_end must be after target_start, within a day (got {length:g} s)")
        eps = 1e-6 * max(1.0, self.upper95_w)
        if not (self.lower95_w <= self.lower80_w + eps and self.lower80_w <= self.upper80_w + eps
                and self.upper80_w <= self.upper95_w + eps):
            raise ValueError("intervals must nest: lower95_w <= lower80_w <= upper80_w <= upper95_w")
        return self


class Forecast(_Body):
    """A site's forecasts made at ``made_ts`` (one per series and horizon). Each target lies
    after ``made_ts`` and at most a day ahead."""

    record_id: int = Field(ge=0)
    made_ts: float = Field(ge=0.0, le=1e11, allow_inf_nan=False)
    points: list[ForecastPoint] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _ahead(self) -> Forecast:
        for p in self.points:
            if not (self.made_ts - 3_600.0 <= p.target_start and p.target_end <= self.made_ts + 86_400.0):
                raise ValueError(f"{p.series} target [{p.target_start:g}, {p.target_end:g}) is not within a day "
                                 f"of made_ts {self.made_ts:g}")
        return self


class Alarm(_Body):
    """An alarm raised (``active=True``) or cleared (``active=False``) at a site, optionally
    naming one device. Dashboards key alarms by (sender, code, device)."""

    code: str = Field(max_length=64)
    message: str = Field(max_length=1024)
    device: str | None = Field(default=None, max_length=64)
    severity: str = Field(default="warning", pattern="^(info|warning|critical)$")
    active: bool = True
    ts: float | None = Field(default=None, allow_inf_nan=False)


PRIORITIES = ("critical", "essential", "flexible")  # served in this order in a shortage


class BorrowRequest(_Body):
    """A site whose own storage cannot cover its need asks the fleet (the virtual battery) for
    ``power_w`` over ``[start, end)``. The coordinator answers with an ``ack``: refused (with
    the reason) when the fleet cannot lend that much, else ``lend`` grants follow."""

    request_id: int = Field(ge=0)
    power_w: float = Field(gt=0.0, le=1e7, allow_inf_nan=False)
    start: float = Field(allow_inf_nan=False)
    end: float = Field(allow_inf_nan=False)
    priority: str = Field(default="essential", pattern="^(critical|essential|flexible)$")

    @model_validator(mode="after")
    def _window(self) -> BorrowRequest:
        if not 0 < self.end - self.start <= 86_400:
            raise ValueError(f"end must be after start, within a day (got {self.end - self.start:g} s)")
        return self


class Lend(_Body):
    """A virtual-battery grant: ``role`` lender (deliver ``power_w`` more over the window) or
    borrower (receive it). Both sides trade the energy on chain through the normal order path at
    ``price`` (token base units per Wh): the lender offers, the borrower bids, ``energy_wh``
    each, for the market interval(s) that deliver in ``[start, end)``. With network-aware
    clearing a trade needs some surplus to pay the grid fee: the borrower then bids up to
    ``bid_price`` and the trade clears between the two."""

    request_id: int = Field(ge=0)
    role: str = Field(pattern="^(lender|borrower)$")
    counterparty: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    power_w: float = Field(gt=0.0, le=1e7, allow_inf_nan=False)
    energy_wh: int = Field(ge=1, le=MAX_WH)
    start: float = Field(allow_inf_nan=False)
    end: float = Field(allow_inf_nan=False)
    price: int = Field(gt=0, le=MAX_PRICE)
    bid_price: int | None = Field(default=None, gt=0, le=MAX_PRICE)  # the borrower's limit (default: price)
    # withdraws the grant of this request from this counterparty (its lender refused it)
    revoke: bool = False

    @model_validator(mode="after")
    def _bid_covers_price(self) -> Lend:
        if self.bid_price is not None and self.bid_price < self.price:
            raise ValueError(f"bid_price {self.bid_price} is below price {self.price}")
        return self


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


MAX_ACKS = 256  # acknowledgements in one ``acks`` envelope, seqs in one ``busy`` error


class Acks(_Body):
    """Several acknowledgements in one signed envelope: the coordinator answers the messages of
    one link that were stored together with one signature, not one each (a signature and a
    socket write per message were a third of its ingest time)."""

    acks: list[Ack] = Field(min_length=1, max_length=MAX_ACKS)


class Error(_Body):
    """A refusal. ``seq`` is the refused message's; a ``busy`` refusal of several messages of
    one link lists them all in ``seqs`` (``seq`` is then the first)."""

    reason: str
    message: str
    seq: int | None = None
    seqs: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list, max_length=MAX_ACKS)


SCHEMAS: dict[str, type[_Body]] = {
    "hello": Hello,
    "welcome": Welcome,
    "interval": IntervalNotice,
    "dispatch": Dispatch,
    "ack": Ack,
    "acks": Acks,
    "arm": Arm,
    "meter": Meter,
    "telemetry": Telemetry,
    "alarm": Alarm,
    "forecast": Forecast,
    "error": Error,
    "config": Config,
    "config_result": ConfigResult,
    "borrow": BorrowRequest,
    "lend": Lend,
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
