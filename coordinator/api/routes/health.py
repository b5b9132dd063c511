"""``/healthz``: 200 with ``status: ok`` when the coordinator can do its job, 503 with
``status: degraded`` and the reasons in ``problems`` when it cannot: the chain is unreachable,
its head is behind the block already indexed (the node was reset or is another chain), the
market address holds no code, or an interval is stuck past its schedule."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from coordinator.api.deps import CoordinatorDep
from coordinator.api.schemas import Health
from coordinator.market.lifecycle import ACTIVE_STAGES

router = APIRouter(tags=["health"])


def _chain_view(coord: Any) -> tuple[int, bool]:
    w3 = coord.w3
    return int(w3.eth.block_number), bool(w3.eth.get_code(coord.deployment.market))


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "degraded: the reasons are in `problems`"}},
)
async def healthz(coord: CoordinatorDep) -> Any:
    problems: list[str] = []
    indexed = coord.store.cursor("market", -1)
    try:
        block, has_code = await asyncio.to_thread(_chain_view, coord)
    except Exception as exc:  # noqa: BLE001 - any chain failure means unhealthy
        block, has_code = -1, True
        problems.append(f"chain unreachable: {exc.__class__.__name__}")
    if block >= 0 and block < indexed:
        problems.append(
            f"chain head {block} is behind the indexed block {indexed}: the node was reset or is another chain"
        )
    if block >= 0 and not has_code:
        problems.append(f"no contract code at the market address {coord.deployment.market}: wrong chain or reset node")
    for name, why in getattr(coord, "dead_tasks", {}).items():
        problems.append(f"task {name} stopped: {why}")
    stuck: list[int] = []
    lapsed = 0
    loop = coord.loop
    if loop is not None:
        now = coord.clock.now()
        slack = loop.cfg.meter_wait_s + loop.cfg.interval_s  # settled within this after delivery ends
        for row in coord.store.lifecycle_rows(ACTIVE_STAGES):
            if row["delivery_end"] is not None and now > float(row["delivery_end"]) + slack:
                stuck.append(int(row["interval"]))
        lapsed = len(coord.store.lifecycle_rows(("lapsed",)))
        for k in stuck:
            why = loop.errors.get(k) or (coord.store.lifecycle(k) or {}).get("error") or "no progress"
            problems.append(f"interval {k} stuck past its schedule: {why}")
    health = Health(
        status="degraded" if problems else "ok",
        chain_id=coord.chain_id,
        block=block,
        indexed_block=indexed,
        agents_connected=len(coord.hub.links),
        intervals_settled=coord.store.count_intervals("settled"),
        intervals_failed=len(loop.failed) if loop else 0,
        intervals_lapsed=lapsed,
        intervals_stuck=stuck,
        problems=problems,
    )
    if problems:
        return JSONResponse(status_code=503, content=health.model_dump())
    return health
