"""Remote configuration: an authenticated operator changes a site's control settings.

The change travels to the agent as a signed ``config`` envelope; the agent checks it against
its own safety envelope and answers with a ``config_result`` (applied, or refused with its
reason), which the hub writes to the event log. Every change sent is logged too.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from coordinator.api.deps import AnalyticsDep, CoordinatorDep
from coordinator.api.operator import OperatorDep
from coordinator.api.routes.analytics import Address, errors, run
from coordinator.api.schemas_analytics import ConfigChange, ConfigSent

router = APIRouter(prefix="/api/v1/sites", tags=["remote configuration"])


@router.post(
    "/{address}/config",
    response_model=ConfigSent,
    status_code=202,
    responses=errors(400, 401, 403, 404, 409, 422),
)
async def send_config(
    address: Address, change: ConfigChange, coord: CoordinatorDep, analytics: AnalyticsDep, operator: OperatorDep
) -> Any:
    """Send new control settings to a site; the outcome arrives later in the event log
    (``config_applied`` or ``config_refused`` with the agent's reason)."""
    settings = change.model_dump(exclude_none=True)
    if not settings:
        raise HTTPException(status_code=422, detail="name at least one setting to change")
    run(lambda: analytics.participant(address))
    if address not in coord.hub.links:
        raise HTTPException(status_code=409, detail=f"the agent of {address} is not connected; nothing was sent")
    summary = ", ".join(f"{k}={v}" for k, v in settings.items())
    config_id = analytics.add_event(
        coord.clock.now(),
        "config_sent",
        f"{operator} asked for {summary}",
        site=address,
        data={"settings": settings, "by": operator},
    )
    if not await coord.hub.send(address, "config", {"config_id": config_id, "settings": settings}):
        analytics.add_event(
            coord.clock.now(),
            "config_refused",
            "the link to the agent broke before the change was sent",
            site=address,
            severity="warning",
            data={"config_id": config_id, "reason": "link broken"},
        )
        raise HTTPException(status_code=409, detail=f"the link to {address} broke; nothing was applied")
    return ConfigSent(config_id=config_id, site=address, settings=settings)
