from __future__ import annotations

from fastapi import APIRouter, Query

from coordinator.api.deps import CoordinatorDep
from coordinator.api.guard import MAX_SQL_INT
from coordinator.api.schemas import ParticipantPublic, ParticipantsPublic, error_responses

router = APIRouter(prefix="/api/v1/participants", tags=["participants"])


@router.get("", response_model=ParticipantsPublic, responses=error_responses(422))
def list_participants(
    coord: CoordinatorDep,
    limit: int = Query(default=1000, ge=1, le=10_000),
    offset: int = Query(default=0, ge=0, le=MAX_SQL_INT),
) -> ParticipantsPublic:
    rows = coord.store.participant_rows(limit, offset)
    data = [
        ParticipantPublic(
            address=r["address"],
            ed25519_key=r["ed25519_key"],
            zone=r["zone"],
            registered=bool(r["registered"]),
            connected=r["address"] in coord.hub.links,
            sold_wh=int(r["sold_wh"]),
            bought_wh=int(r["bought_wh"]),
        )
        for r in rows
    ]
    return ParticipantsPublic(data=data, count=coord.store.count_participants())
