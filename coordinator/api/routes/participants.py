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
    rows = coord.store.query(
        """
        select p.address, p.ed25519_key, p.zone, p.registered,
          coalesce((select sum(s.delivered_wh) from settlements s join orders o on o.id = s.order_id
                    where s.owner = p.address and o.side = 'offer'), 0) as sold_wh,
          coalesce((select sum(s.delivered_wh) from settlements s join orders o on o.id = s.order_id
                    where s.owner = p.address and o.side = 'bid'), 0) as bought_wh
        from participants p order by p.block, p.address limit ? offset ?
        """,
        [limit, offset],
    )
    total = coord.store.one("select count(*) as n from participants")
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
    return ParticipantsPublic(data=data, count=int(total["n"]) if total else len(data))
