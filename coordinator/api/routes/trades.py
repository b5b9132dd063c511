from __future__ import annotations

from fastapi import APIRouter, Query

from coordinator.api.deps import StoreDep
from coordinator.api.guard import MAX_SQL_INT
from coordinator.api.schemas import TradePublic, TradesPublic, error_responses

router = APIRouter(prefix="/api/v1/trades", tags=["trades"])


@router.get("", response_model=TradesPublic, responses=error_responses(422))
def list_trades(
    store: StoreDep,
    interval: int | None = Query(default=None, ge=0, le=MAX_SQL_INT),
    owner: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=500, ge=1, le=10_000),
    offset: int = Query(default=0, ge=0, le=MAX_SQL_INT),
) -> TradesPublic:
    rows = store.trade_rows(interval, owner, limit, offset)
    return TradesPublic(data=[TradePublic.model_validate(r) for r in rows], count=len(rows))
