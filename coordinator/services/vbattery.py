"""The virtual battery: sites short of energy borrow from the fleet's storage (``docs/fleet.md``).

Requests are planned in priority order (critical, essential, flexible; arrival order within a
class). Each is served from the lenders with the highest SoC above their owner's reserve first,
so the fleet's SoC stays balanced; a lender's SoC is re-estimated after each draw. A lender can
lend its healthy storage's available discharge power less what its own site draws now, capped by
what its energy above the reserve sustains over the window, less its frequency-response share
and less what it has already lent over an overlapping window. The owner's reserve always comes
first: only energy above it is lent. A request for more than the fleet can lend at all is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Grant", "Lender", "Plan", "Request", "lendable_w", "plan"]

PRIORITY_ORDER = {"critical": 0, "essential": 1, "flexible": 2}
STORAGE = ("battery", "ups", "flywheel")


@dataclass(frozen=True)
class Request:
    address: str
    request_id: int
    power_w: float
    start: float
    end: float
    priority: str
    arrival: int = 0


@dataclass
class Lender:
    address: str
    headroom: float  # SoC above the owner's reserve (0..1), capacity-weighted
    capacity_wh: float
    lendable_w: float


@dataclass(frozen=True)
class Grant:
    request: Request
    lender: str
    power_w: float

    @property
    def energy_wh(self) -> int:
        return int(round(self.power_w * (self.request.end - self.request.start) / 3600.0))


@dataclass
class Plan:
    grants: list[Grant] = field(default_factory=list)
    unserved: dict[tuple[str, int], float] = field(default_factory=dict)  # (address, request id) -> W not served


def lendable_w(devices: dict[str, dict[str, Any]], healthy: set[str], duration_s: float) -> tuple[float, float, float]:
    """(lendable W, SoC above reserve, capacity Wh) of one site's healthy storage."""
    power = cap = above = 0.0
    for dev_id, d in devices.items():
        if dev_id not in healthy or d.get("kind") not in STORAGE:
            continue
        spare = max(0.0, (d.get("max_discharge_w") or 0.0) - max(0.0, d.get("power_w") or 0.0))
        usable = d.get("usable_wh") or 0.0
        power += min(spare, usable * 3600.0 / duration_s)
        c = d.get("capacity_wh") or 0.0
        cap += c
        above += usable
    return power, (above / cap if cap else 0.0), cap


def plan(requests: list[Request], lenders: list[Lender], *, balance: bool = True) -> Plan:
    """Serve ``requests`` from ``lenders`` (both changed copies are not kept; see the module).
    Without ``balance`` the lenders are drawn in a fixed order (their addresses), each as far as
    it can go, with no regard to SoC: the non-levelling choice levelling is measured against."""
    out = Plan()
    pool = {ln.address: Lender(ln.address, ln.headroom, ln.capacity_wh, ln.lendable_w) for ln in lenders}
    for req in sorted(requests, key=lambda r: (PRIORITY_ORDER[r.priority], r.arrival)):
        need = req.power_w
        hours = (req.end - req.start) / 3600.0
        while need > 1e-6:
            cands = [ln for ln in pool.values() if ln.address != req.address and ln.lendable_w > 1e-6]
            if not cands:
                break
            if balance:
                cands.sort(key=lambda ln: (ln.headroom, ln.lendable_w), reverse=True)
            else:
                cands.sort(key=lambda ln: ln.address)
            best = cands[0]
            take = min(need, best.lendable_w)
            if balance and len(cands) > 1 and best.capacity_wh > 0 and hours > 0:
                # no further than the next lender's headroom: SoC stays balanced
                level = (best.headroom - cands[1].headroom) * best.capacity_wh / hours
                take = min(take, max(level, min(1.0, take)))
            out.grants.append(Grant(req, best.address, take))
            best.lendable_w -= take
            if best.capacity_wh > 0:
                best.headroom -= take * hours / best.capacity_wh
            need -= take
        if need > 1e-6:
            out.unserved[(req.address, req.request_id)] = need
    return out
