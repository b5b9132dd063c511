"""The virtual battery: sites short of energy borrow from the fleet's storage (``docs/fleet.md``).

Requests are planned in priority order (critical, essential, flexible; arrival order within a
class). Each is served from the lenders with the highest SoC above their owner's reserve first,
so the fleet's SoC stays balanced; a lender's SoC is re-estimated after each draw. A lender can
lend its healthy storage's available discharge power less what its own site draws now, capped by
what its energy above the reserve sustains over the window, less its frequency-response share
and less what it has already lent over an overlapping window. The owner's reserve always comes
first: only energy above it is lent, and only what the lender can export: its storage first
covers what its own site imports. A site that borrows over a window, or asks to in the same plan,
does not lend. A request for more than the fleet can lend at all is refused.

Grants already made are firm (they are traded on chain at the next interval notice), so a
shortage that builds up over time is met by holding back: requests of a lower class may not take
the last share of the fleet's lendable power (``held_back``, a fraction per class, e.g. 20 % for
flexible requests), which stays for the classes above them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Grant", "Lender", "Plan", "Request", "available_w", "lendable_w", "plan"]

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


def available_w(remaining_w: float, total_w: float, priority: str, held_back: Mapping[str, float] | None) -> float:
    """What a request of ``priority`` may take of ``remaining_w``: all of it but the share of
    ``total_w`` (the fleet's lendable power before any grant) held back for the classes above."""
    held = (held_back or {}).get(priority, 0.0) * total_w
    return max(0.0, remaining_w - held)


def plan(requests: list[Request], lenders: list[Lender], *, balance: bool = True,
         held_back: Mapping[str, float] | None = None, total_w: float | None = None) -> Plan:
    """Serve ``requests`` from ``lenders`` (both changed copies are not kept; see the module).
    Without ``balance`` the lenders are drawn in a fixed order (their addresses), each as far as
    it can go, with no regard to SoC: the non-levelling choice levelling is measured against.
    ``held_back``/``total_w``: see :func:`available_w` (``total_w`` defaults to what the lenders
    have now)."""
    out = Plan()
    pool = {ln.address: Lender(ln.address, ln.headroom, ln.capacity_wh, ln.lendable_w) for ln in lenders}
    total = sum(ln.lendable_w for ln in lenders) if total_w is None else total_w
    own = {ln.address: ln.lendable_w for ln in lenders}  # a site does not lend to itself
    asking = {r.address for r in requests}  # nor lend while it asks to borrow
    for req in sorted(requests, key=lambda r: (PRIORITY_ORDER[r.priority], r.arrival)):
        hours = (req.end - req.start) / 3600.0
        cands = [ln for ln in pool.values() if ln.address not in asking and ln.lendable_w > 1e-6]
        base = total - sum(own.get(a, 0.0) for a in asking)
        may = min(req.power_w, available_w(sum(ln.lendable_w for ln in cands), base, req.priority, held_back))
        takes = _levelled(cands, may, hours) if balance else _in_order(cands, may)
        for ln in cands:
            take = takes.get(ln.address, 0.0)
            if take <= 1e-6:
                continue
            out.grants.append(Grant(req, ln.address, take))  # one grant per lender and request
            ln.lendable_w -= take
            if ln.capacity_wh > 0:
                ln.headroom -= take * hours / ln.capacity_wh
        need = req.power_w - sum(takes.values())
        if need > 1e-6:
            out.unserved[(req.address, req.request_id)] = need
    return out


def _in_order(cands: list[Lender], need: float) -> dict[str, float]:
    takes: dict[str, float] = {}
    for ln in sorted(cands, key=lambda ln: ln.address):
        if need <= 1e-6:
            break
        takes[ln.address] = min(need, ln.lendable_w)
        need -= takes[ln.address]
    return takes


def _levelled(cands: list[Lender], need: float, hours: float) -> dict[str, float]:
    """Water-filling: draw every lender down towards one common SoC-above-reserve level, the
    fullest first, so that the draws meet ``need`` (or everything lendable, if less). A lender
    whose power limit binds gives its limit and the others go lower."""
    if not cands or need <= 1e-6:
        return {}

    def give(ln: Lender, level: float) -> float:
        if ln.capacity_wh <= 0 or hours <= 0:
            return ln.lendable_w if level <= 0 else 0.0
        return min(ln.lendable_w, max(0.0, (ln.headroom - level) * ln.capacity_wh / hours))

    total = sum(ln.lendable_w for ln in cands)
    if total <= need:
        return {ln.address: ln.lendable_w for ln in cands}
    lo, hi = -1.0, max(ln.headroom for ln in cands)  # give(lo) >= need > give(hi) = 0
    if sum(give(ln, lo) for ln in cands) < need:  # power-limited lenders below any level: take what there is
        return {ln.address: ln.lendable_w for ln in cands}
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if sum(give(ln, mid) for ln in cands) >= need:
            lo = mid
        else:
            hi = mid
    takes = {ln.address: give(ln, lo) for ln in cands}
    over = sum(takes.values()) - need
    if over > 0:  # bisection slack: trim proportionally so the grants add up to the need
        scale = need / (need + over)
        takes = {a: w * scale for a, w in takes.items()}
    return takes
