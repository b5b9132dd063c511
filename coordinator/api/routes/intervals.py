from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Path, Query

from coordinator.api.deps import StoreDep
from coordinator.api.guard import MAX_SQL_INT
from coordinator.api.schemas import (
    IntervalDetail,
    IntervalPublic,
    IntervalsPublic,
    OrderPublic,
    TradePublic,
    error_responses,
)

router = APIRouter(prefix="/api/v1/intervals", tags=["intervals"])


def interval_public(row: dict[str, Any]) -> IntervalPublic:
    data = dict(row)
    for key, empty in (("commit_txs", "[]"), ("zone_prices", "{}"), ("flows", "{}")):
        data[key] = json.loads(data.get(key) or empty)
    return IntervalPublic.model_validate(data)


@router.get("", response_model=IntervalsPublic, responses=error_responses(422))
def list_intervals(
    store: StoreDep,
    status: str | None = Query(default=None, max_length=32),
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=MAX_SQL_INT),
) -> IntervalsPublic:
    rows = store.interval_rows(status, limit, offset)
    return IntervalsPublic(data=[interval_public(r) for r in rows], count=store.count_intervals(status))


@router.get("/{interval_id}", response_model=IntervalDetail, responses=error_responses(404, 422))
def get_interval(store: StoreDep, interval_id: int = Path(ge=0, le=MAX_SQL_INT)) -> IntervalDetail:
    row = store.interval_row(interval_id)
    if row is None:
        raise HTTPException(status_code=404, detail=f"interval {interval_id} not found")
    orders = store.interval_orders(interval_id)
    return IntervalDetail(
        **interval_public(row).model_dump(),
        orders=[OrderPublic.model_validate(o) for o in orders],
        trades=[TradePublic.model_validate(t) for t in store.trade_rows(interval_id, None, 100_000, 0)],
    )
