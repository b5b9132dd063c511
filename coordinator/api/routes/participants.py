from __future__ import annotations

from fastapi import APIRouter

from coordinator.api.deps import CoordinatorDep
from coordinator.api.schemas import ParticipantPublic, ParticipantsPublic

router = APIRouter(prefix="/api/v1/participants", tags=["participants"])


@router.get("", response_model=ParticipantsPublic)
def list_participants(coord: CoordinatorDep) -> ParticipantsPublic:
    rows = coord.store.query(
        """
        select p.address, p.ed25519_key, p.zone, p.registered,
          coalesce((select sum(s.delivered_wh) from settlements s join orders o on o.id = s.order_id
                    where s.owner = p.address and o.side = 'offer'), 0) as sold_wh,
          coalesce((select sum(s.delivered_wh) from settlements s join orders o on o.id = s.order_id
                    where s.owner = p.address and o.side = 'bid'), 0) as bought_wh
        from participants p order by p.block, p.address
        """
    )
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
    return ParticipantsPublic(data=data, count=len(data))
