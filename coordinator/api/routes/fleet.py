"""The fleet (``docs/fleet.md``): totals, sites, devices, exclusions, events; the operator's
mode switch."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict

from coordinator.api.deps import CoordinatorDep
from coordinator.api.operator import OperatorDep
from coordinator.api.schemas import error_responses

router = APIRouter(prefix="/api/v1/fleet", tags=["fleet"])


class ModeCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["standby", "support", "emergency"]


def _fleet(coord: Any) -> Any:
    if coord.fleet is None:
        raise HTTPException(status_code=404, detail="the fleet service is not enabled (fleet.enabled)")
    return coord.fleet


@router.get("", responses=error_responses(404))
async def fleet(coord: CoordinatorDep) -> dict[str, Any]:
    """Fleet totals, the service (required / available / armed response), every site with its
    devices' latest state, the excluded units with reasons, recent events."""
    return _fleet(coord).snapshot()  # type: ignore[no-any-return]


@router.get("/sites/{address}", responses=error_responses(404, 422))
async def fleet_site(address: str, coord: CoordinatorDep) -> dict[str, Any]:
    view = _fleet(coord).site(address)
    if view is None:
        raise HTTPException(status_code=404, detail=f"no telemetry from {address}")
    return view  # type: ignore[no-any-return]


@router.get("/sites/{address}/telemetry", responses=error_responses(404, 422))
async def fleet_site_history(address: str, coord: CoordinatorDep,
                             limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> dict[str, Any]:
    rows = _fleet(coord).history(address, limit)
    return {"data": rows, "count": len(rows)}


@router.post("/mode", responses=error_responses(400, 401, 403, 404, 413, 422))
async def set_mode(cmd: ModeCommand, coord: CoordinatorDep, operator: OperatorDep) -> dict[str, Any]:
    """Operator command (the operator key, like every change): the fleet's base mode (an event
    may still lift support to emergency). Logged in the event log."""
    fl = _fleet(coord)
    mode = fl.set_mode(cmd.mode)
    analytics = getattr(coord, "analytics", None)
    if analytics is not None:
        analytics.add_event(coord.clock.now(), "operator", f"fleet mode set to {cmd.mode} by {operator}")
    return {"operator_mode": cmd.mode, "mode": mode}
