"""Response and request schemas of the analytics, event-log and remote-configuration API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coordinator.api.schemas import TradePublic

ADDRESS = r"^0x[0-9a-fA-F]{40}$"
_ADDR_EXAMPLE = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"


class ZonePoint(BaseModel):
    price: int | None = None
    sold_wh: int = 0
    bought_wh: int = 0


class MarketPoint(BaseModel):
    id: int
    status: str | None = None
    delivery_start: float | None = None
    delivery_end: float | None = None
    mechanism: str | None = None
    clearing_price: int | None = None
    volume_wh: int | None = None
    welfare: float | None = None
    fee_revenue: int | None = None
    congestion_rent: int | None = None
    buyers_pay: int | None = None
    sellers_receive: int | None = None
    delivered_wh: int | None = None
    shortfall_wh: int | None = None
    n_orders: int | None = None
    n_fills: int | None = None
    zones: dict[str, ZonePoint] = {}
    flows: dict[str, int] = {}


class MarketSeries(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "data": [
                        {
                            "id": 1979,
                            "status": "settled",
                            "delivery_start": 1782054900.0,
                            "delivery_end": 1782055800.0,
                            "clearing_price": 185,
                            "volume_wh": 3950,
                            "welfare": 512345.0,
                            "fee_revenue": 15000,
                            "congestion_rent": 0,
                            "zones": {"feeder-a": {"price": 180, "sold_wh": 3950, "bought_wh": 950}},
                            "flows": {"feeder-a->feeder-b": 3000},
                        }
                    ],
                    "next_cursor": None,
                }
            ]
        }
    )
    data: list[MarketPoint]
    next_cursor: str | None = None


class DepthLevel(BaseModel):
    price: int
    qty_wh: int
    cumulative_wh: int


class ZoneDepth(BaseModel):
    supply: list[DepthLevel]
    demand: list[DepthLevel]


class Depth(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "interval": 1979,
                    "status": "settled",
                    "clearing_price": 185,
                    "zone_prices": {"feeder-a": 180},
                    "supply": [{"price": 120, "qty_wh": 2000, "cumulative_wh": 2000}],
                    "demand": [{"price": 250, "qty_wh": 1500, "cumulative_wh": 1500}],
                    "zones": {},
                }
            ]
        }
    )
    interval: int
    status: str | None = None
    clearing_price: int | None = None
    zone_prices: dict[str, Any] = {}
    supply: list[DepthLevel]
    demand: list[DepthLevel]
    zones: dict[str, ZoneDepth] = {}


class Trade(TradePublic):
    """A filled order with its settlement (:class:`TradePublic`), listed before its commit
    transaction is indexed too."""

    commit_tx: str | None = None  # type: ignore[assignment]


class TradesPage(BaseModel):
    data: list[Trade]
    next_cursor: str | None = None


class Money(BaseModel):
    sold_wh: int
    bought_wh: int
    traded_wh: int
    received: int = Field(description="token base units received for energy sold")
    paid: int = Field(description="token base units paid for energy bought")
    forfeited: int = Field(description="collateral forfeited for energy not delivered")
    compensated: int = Field(description="compensation received for energy not delivered to us")
    grid_cost: int = Field(description="what the bought energy would have cost at the import tariff")
    grid_revenue: int = Field(description="what the sold energy would have earned at the export tariff")
    saving: int = Field(description="grid_cost - paid + received - grid_revenue - forfeited + compensated")


class TariffOut(BaseModel):
    import_price: int
    export_price: int


class ParticipantSummary(Money):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "address": _ADDR_EXAMPLE,
                    "zone": 0,
                    "zone_name": "feeder-a",
                    "registered": 1,
                    "intervals": 8,
                    "sold_wh": 12000,
                    "bought_wh": 0,
                    "traded_wh": 12000,
                    "received": 2160000,
                    "paid": 0,
                    "forfeited": 0,
                    "compensated": 0,
                    "grid_cost": 0,
                    "grid_revenue": 960000,
                    "saving": 1200000,
                    "tariff": {"import_price": 300, "export_price": 80},
                }
            ]
        }
    )
    address: str
    zone: int
    zone_name: str
    registered: int
    intervals: int
    tariff: TariffOut


class ParticipantInterval(Money):
    interval: int


class ParticipantIntervals(BaseModel):
    data: list[ParticipantInterval]
    next_cursor: str | None = None


class Site(BaseModel):
    address: str
    zone: int
    zone_name: str
    connected: bool
    ts: float | None = None
    net_export_w: float | None = None
    soc: float | None = None
    devices: dict[str, dict[str, Any]] = {}


class Sites(BaseModel):
    data: list[Site]
    count: int


class TelemetryPoint(BaseModel):
    ts: float
    record_id: int
    net_export_w: float
    soc: float | None = None
    devices: dict[str, dict[str, Any]] = {}


class TelemetryPage(BaseModel):
    data: list[TelemetryPoint]
    next_cursor: str | None = None


class ForecastPoint(BaseModel):
    """One forecast of a site's mean power over ``[target_start, target_end)`` made
    ``horizon_s`` ahead (W), and what the site's telemetry measured over that window:
    ``actual_w`` is None until the window has passed (``actual_samples`` telemetry records)."""

    series: Literal["demand", "pv"]
    horizon_s: float
    target_start: float
    target_end: float
    made_ts: float
    point_w: float
    lower80_w: float
    upper80_w: float
    lower95_w: float
    upper95_w: float
    model: str
    actual_w: float | None = None
    actual_samples: int = 0
    error_w: float | None = Field(default=None, description="point_w - actual_w")
    in_80: bool | None = None
    in_95: bool | None = None


_FORECAST_EXAMPLE = {
    "series": "demand",
    "horizon_s": 300.0,
    "target_start": 1782054900.0,
    "target_end": 1782055200.0,
    "made_ts": 1782054901.0,
    "point_w": 2310.5,
    "lower80_w": 1980.0,
    "upper80_w": 2650.2,
    "lower95_w": 1790.4,
    "upper95_w": 2890.0,
    "model": "auto:level_shift_daily",
    "actual_w": 2402.7,
    "actual_samples": 30,
    "error_w": -92.2,
    "in_80": True,
    "in_95": True,
}


class ForecastPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"data": [_FORECAST_EXAMPLE], "next_cursor": "WyJmYyIsMTc4MjA1NDkwMC4wLDMwMC4wXQ"}]}
    )

    data: list[ForecastPoint]
    next_cursor: str | None = None


class ForecastHorizonError(BaseModel):
    horizon_s: float
    forecasts: int = Field(description="forecasts in the period")
    n: int = Field(description="of which already measured (the figures below are over these)")
    mae_w: float | None = Field(default=None, description="mean absolute error (W)")
    mape_pct: float | None = Field(default=None, description="mean absolute percentage error, over actuals >= 1 W")
    bias_w: float | None = Field(default=None, description="mean of forecast - actual (W)")
    n_interval: int = Field(default=0, description="measured forecasts with an interval (the coverage is over these)")
    coverage80: float | None = Field(default=None, description="share of actuals inside the 80 % interval")
    coverage95: float | None = Field(default=None, description="share of actuals inside the 95 % interval")


class ForecastError(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "address": _ADDR_EXAMPLE,
                    "series": "demand",
                    "since": 1781968500.0,
                    "until": None,
                    "horizons": [
                        {"horizon_s": 300.0, "forecasts": 288, "n": 287, "mae_w": 181.4, "mape_pct": 8.21,
                         "bias_w": -12.5, "n_interval": 263, "coverage80": 0.8153, "coverage95": 0.9512},
                        {"horizon_s": 900.0, "forecasts": 288, "n": 285, "mae_w": 240.9, "mape_pct": 10.77,
                         "bias_w": -20.1, "n_interval": 261, "coverage80": 0.7754, "coverage95": 0.9368},
                    ],
                }
            ]
        }
    )

    address: str
    series: Literal["demand", "pv"]
    since: float | None = None
    until: float | None = None
    horizons: list[ForecastHorizonError]


class Event(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 12,
                    "ts": 1782055000.0,
                    "kind": "alarm",
                    "site": _ADDR_EXAMPLE,
                    "device": "battery0",
                    "code": "overtemp",
                    "severity": "critical",
                    "active": True,
                    "message": "cell temperature 61 C above 55 C",
                    "data": {},
                    "acked_at": None,
                    "acked_by": None,
                }
            ]
        }
    )
    id: int
    ts: float
    kind: str
    site: str | None = None
    device: str | None = None
    code: str | None = None
    severity: str | None = None
    active: bool | None = None
    message: str
    data: dict[str, Any] = {}
    acked_at: float | None = None
    acked_by: str | None = None


class EventsPage(BaseModel):
    data: list[Event]
    next_cursor: str | None = None


class ConfigChange(BaseModel):
    """Control settings an operator may ask a site to change; the agent checks each against
    its own safety envelope and may refuse the change with a reason."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reserve_soc": 0.35, "high_threshold": 0.85}]},
    )
    reserve_soc: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    low_threshold: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    high_threshold: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    low_use_w: float | None = Field(default=None, ge=0.0, le=1e7, allow_inf_nan=False)
    flywheel_spike_w: float | None = Field(default=None, ge=0.0, le=1e7, allow_inf_nan=False)
    max_order_wh: int | None = Field(default=None, ge=1, lt=2**32)
    emergency_opt_in: bool | None = None
    trading_enabled: bool | None = None
    idle_mode: Literal["self_consumption", "idle"] | None = None


class ConfigSent(BaseModel):
    config_id: int
    site: str
    status: Literal["sent"] = "sent"
    settings: dict[str, Any]


class Ack(BaseModel):
    event: Event
