from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException

from coordinator.api.deps import CoordinatorDep
from coordinator.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz(coord: CoordinatorDep) -> Health:
    try:
        block = await asyncio.to_thread(lambda: coord.w3.eth.block_number)
    except Exception as exc:  # noqa: BLE001 - any chain failure means unhealthy
        raise HTTPException(status_code=503, detail=f"chain unreachable: {exc.__class__.__name__}") from exc
    settled = coord.store.one("select count(*) as n from intervals where status = 'settled'")
    return Health(
        status="ok",
        chain_id=coord.chain_id,
        block=block,
        indexed_block=coord.store.cursor("market", -1),
        agents_connected=len(coord.hub.links),
        intervals_settled=int(settled["n"]) if settled else 0,
        intervals_failed=len(coord.loop.failed) if coord.loop else 0,
    )
