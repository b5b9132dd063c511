from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from coordinator.api.deps import StoreDep
from coordinator.api.guard import MAX_SQL_INT
from coordinator.api.schemas import TradePublic, TradesPublic, error_responses
from coordinator.store import Store

router = APIRouter(prefix="/api/v1/trades", tags=["trades"])

_SELECT = """
select f.order_id, f.interval, f.owner, f.side, f.qty_wh, f.price, f.tx as commit_tx,
       s.delivered_wh, s.amount, s.penalty, s.tx as settle_tx
from fills f left join settlements s on s.order_id = f.order_id
where f.qty_wh > 0 {extra}
order by f.interval, f.order_id limit ? offset ?
"""


def trade_rows(store: Store, interval: int | None, owner: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    extra, params = "", []
    if interval is not None:
        extra += " and f.interval = ?"
        params.append(interval)
    if owner is not None:
        extra += " and f.owner = ?"
        params.append(owner)
    return store.query(_SELECT.format(extra=extra), [*params, limit, offset])


@router.get("", response_model=TradesPublic, responses=error_responses(422))
def list_trades(
    store: StoreDep,
    interval: int | None = Query(default=None, ge=0, le=MAX_SQL_INT),
    owner: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=500, ge=1, le=10_000),
    offset: int = Query(default=0, ge=0, le=MAX_SQL_INT),
) -> TradesPublic:
    rows = trade_rows(store, interval, owner, limit, offset)
    return TradesPublic(data=[TradePublic.model_validate(r) for r in rows], count=len(rows))
