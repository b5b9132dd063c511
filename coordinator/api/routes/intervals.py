from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Query

from coordinator.api.deps import StoreDep
from coordinator.api.routes.trades import trade_rows
from coordinator.api.schemas import IntervalDetail, IntervalPublic, IntervalsPublic, OrderPublic, TradePublic

router = APIRouter(prefix="/api/v1/intervals", tags=["intervals"])


def interval_public(row: dict[str, Any]) -> IntervalPublic:
    data = dict(row)
    for key, empty in (("commit_txs", "[]"), ("zone_prices", "{}"), ("flows", "{}")):
        data[key] = json.loads(data.get(key) or empty)
    return IntervalPublic.model_validate(data)


@router.get("", response_model=IntervalsPublic)
def list_intervals(
    store: StoreDep,
    status: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
) -> IntervalsPublic:
    where, params = ("where status = ?", [status]) if status else ("", [])
    rows = store.query(f"select * from intervals {where} order by id limit ? offset ?", [*params, limit, offset])
    count = store.one(f"select count(*) as n from intervals {where}", params)
    return IntervalsPublic(data=[interval_public(r) for r in rows], count=int(count["n"]) if count else 0)


@router.get("/{interval_id}", response_model=IntervalDetail)
def get_interval(interval_id: int, store: StoreDep) -> IntervalDetail:
    row = store.one("select * from intervals where id = ?", [interval_id])
    if row is None:
        raise HTTPException(status_code=404, detail=f"interval {interval_id} not found")
    orders = store.query("select * from orders where interval = ? order by block, log_index", [interval_id])
    return IntervalDetail(
        **interval_public(row).model_dump(),
        orders=[OrderPublic.model_validate(o) for o in orders],
        trades=[TradePublic.model_validate(t) for t in trade_rows(store, interval_id, None, 100_000, 0)],
    )
