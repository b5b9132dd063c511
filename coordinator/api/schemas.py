"""Response schemas of the analytics API, one family per resource."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class IntervalPublic(BaseModel):
    id: int
    status: str | None = None
    delivery_start: float | None = None
    delivery_end: float | None = None
    mechanism: str | None = None
    clearing_price: int | None = None
    volume_wh: int | None = None
    n_orders: int | None = None
    n_fills: int | None = None
    buy_value: int | None = None
    sell_value: int | None = None
    welfare: float | None = None
    fee_revenue: int | None = None
    buyers_pay: int | None = None
    sellers_receive: int | None = None
    delivered_wh: int | None = None
    shortfall_wh: int | None = None
    surplus: int | None = None
    commit_txs: list[str] = []
    settle_tx: str | None = None
    gas_commit: int | None = None
    gas_settle: int | None = None
    clear_seconds: float | None = None
    zone_prices: dict[str, Any] = {}
    flows: dict[str, Any] = {}


class IntervalsPublic(BaseModel):
    data: list[IntervalPublic]
    count: int


class OrderPublic(BaseModel):
    id: str
    interval: int
    owner: str
    side: str
    qty_wh: int
    price: int
    zone: int
    status: str
    tx: str


class TradePublic(BaseModel):
    order_id: str
    interval: int
    owner: str
    side: str
    qty_wh: int
    price: int
    commit_tx: str
    delivered_wh: int | None = None
    amount: int | None = None
    penalty: int | None = None
    settle_tx: str | None = None


class TradesPublic(BaseModel):
    data: list[TradePublic]
    count: int


class IntervalDetail(IntervalPublic):
    orders: list[OrderPublic]
    trades: list[TradePublic]


class ParticipantPublic(BaseModel):
    address: str
    ed25519_key: str
    zone: int
    registered: bool
    connected: bool
    sold_wh: int
    bought_wh: int


class ParticipantsPublic(BaseModel):
    data: list[ParticipantPublic]
    count: int


class Health(BaseModel):
    status: str
    chain_id: int
    block: int
    indexed_block: int
    agents_connected: int
    intervals_settled: int
    intervals_failed: int
    intervals_lapsed: int = 0
    intervals_stuck: list[int] = []
    problems: list[str] = []


class MessageAccepted(BaseModel):
    accepted: bool
    kind: str
    seq: int
    reply: dict[str, Any]


class ErrorDetail(BaseModel):
    reason: str
    message: str


class ErrorResponse(BaseModel):
    detail: ErrorDetail | str | list[dict[str, Any]]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error responses a route can give."""
    text = {
        400: "malformed, unsigned, replayed, expired or otherwise invalid input; nothing changed",
        401: "the operator key is missing or wrong",
        403: "changes are disabled: no operator key is configured",
        404: "no such resource",
        413: "request body over the size limit",
        422: "a query or path parameter out of range or of the wrong type",
        503: "the coordinator cannot serve this now",
    }
    return {code: {"model": ErrorResponse, "description": text[code]} for code in codes}
