"""What the coordinator commits on chain for one cleared interval, and how it settles it.

A pure module (no chain, no I/O): it turns the clearing engine's result into exactly what
``EnergyMarket`` accepts (docs/contracts.md):

* one clearing price per zone -- every network zone (or one price for a market without links),
  including zones where nothing traded, chosen by the engine's own rule (``_alloc``), so that
  every order's fill obeys the price rule: in the money filled in full, out of the money not at
  all, only marginal orders in part;
* one flow per link registered on chain, in the chain's link order;
* one fill per live order at its zone's price, in ascending order id;
* commit chunks that never split one owner's fills on one side (settlement applies each
  reading within one chunk), and, per chunk, the signed readings of its owners.

:func:`check` re-applies the contract's rules in Python, so a plan that would revert is caught
before anything is sent (and the rules have tests that need no chain).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gridswarm.errors import GridSwarmError

from ._alloc import LinkState, equilibrium_prices
from ._book import MAX_PRICE
from .clearing import ClearingResult, Network

COPPER_ZONE = 0xFFFF  # the contract's one zone of a market without links
ChainLink = tuple[int, int, int, int]  # (from_zone, to_zone, fee, limit_wh) as registered on chain
FillRow = tuple[int, int, int]  # (order id, qty Wh, price)


class PlanError(GridSwarmError, ValueError):
    """The clearing result cannot be committed as it stands (configuration or rule mismatch)."""


@dataclass(frozen=True)
class PlanOrder:
    """One live order of the interval as the chain has it."""

    order_id: int
    side: str  # "bid" | "offer"
    qty_wh: int
    price: int  # limit
    zone: int  # chain zone id
    owner: str


@dataclass(frozen=True)
class CommitPlan:
    prices: list[tuple[int, int]]  # (zone id, price), zones ascending; [(0, p)] without links
    flows: list[int]  # per chain link, in chain order
    fills: list[FillRow]  # ascending order id, one per live order
    rent: int  # sum(flow * (price[to] - price[from])): the fee recipient's income

    def price_of(self, zone: int, copper: bool) -> int:
        if copper:
            return self.prices[0][1]
        return dict(self.prices)[zone]


def owner_group(order_id: int) -> int:
    """The (interval, side, owner) part of an order id: fills of one group share a chunk."""
    return order_id >> 31


def _bounds(orders: Iterable[PlanOrder], filled: Mapping[int, int], key: object) -> tuple[dict, dict]:
    """Per zone key, the engine's price bounds: lo = max(accepted offers, bids left unfilled),
    hi = min(accepted bids, offers left unfilled)."""
    lo: dict = {}
    hi: dict = {}
    for o in orders:
        z = key(o)  # type: ignore[operator]
        q = filled.get(o.order_id, 0)
        if o.side == "offer":
            if q > 0:
                lo[z] = max(lo.get(z, 0), o.price)
            if q < o.qty_wh:
                hi[z] = min(hi.get(z, MAX_PRICE), o.price)
        else:
            if q > 0:
                hi[z] = min(hi.get(z, MAX_PRICE), o.price)
            if q < o.qty_wh:
                lo[z] = max(lo.get(z, 0), o.price)
    return lo, hi


def plan(
    orders: Sequence[PlanOrder],
    result: ClearingResult,
    engine_ids: Sequence[int],
    chain_links: Sequence[ChainLink],
    network: Network | None,
    zone_names: Mapping[int, str],
) -> CommitPlan:
    """The commit for ``orders`` cleared into ``result``.

    ``engine_ids[i]`` is the id the engine knew ``orders[i]`` by; ``zone_names`` maps chain
    zone ids to the network's zone names. Raises :class:`PlanError` if the chain's links and
    the coordinator's network disagree, or if the result breaks a rule.
    """
    if result.mechanism != "uniform":
        raise PlanError(f"the market contract settles uniform prices only, not {result.mechanism!r}")
    by_engine = {f.order_id: f for f in result.fills}
    filled = {}
    for o, eid in zip(orders, engine_ids, strict=True):
        f = by_engine.get(eid)
        filled[o.order_id] = int(f.qty_wh) if f else 0
    copper = not chain_links
    if copper:
        if network is not None and network.links:
            raise PlanError("the coordinator has a zone network but the market has no links registered")
        if result.price is not None:
            price = int(result.price)
        else:
            lo, hi = _bounds(orders, filled, lambda o: 0)
            price = (lo.get(0, 0) + hi.get(0, MAX_PRICE)) // 2
        prices = [(0, price)]
        flows: list[int] = []
        zone_price = {COPPER_ZONE: price}
        rent = 0
    else:
        prices, flows, rent = _network_prices(orders, filled, result, chain_links, network, zone_names)
        zone_price = dict(prices)
    fills = []
    for o in sorted(orders, key=lambda o: o.order_id):
        p = zone_price[COPPER_ZONE] if copper else zone_price.get(o.zone)
        if p is None:
            raise PlanError(f"order {o.order_id}: zone {o.zone} has no price (not in the network)")
        fills.append((o.order_id, filled[o.order_id], p))
    out = CommitPlan(prices=prices, flows=flows, fills=fills, rent=rent)
    check(out, orders, chain_links)
    return out


def _network_prices(
    orders: Sequence[PlanOrder],
    filled: Mapping[int, int],
    result: ClearingResult,
    chain_links: Sequence[ChainLink],
    network: Network | None,
    zone_names: Mapping[int, str],
) -> tuple[list[tuple[int, int]], list[int], int]:
    if network is None:
        raise PlanError("the market has links registered but the coordinator has no zone network")
    ids = {name: zid for zid, name in zone_names.items()}
    missing = [z for z in network.zones if z not in ids]
    if missing:
        raise PlanError(f"network zones without a chain zone id: {missing}")
    by_pair = {(lk.from_zone, lk.to_zone): lk for lk in network.links}
    if len(by_pair) != len(chain_links):
        raise PlanError(f"the market has {len(chain_links)} links, the coordinator's network {len(by_pair)}")
    index = {z: i for i, z in enumerate(network.zones)}
    states = []
    flows = []
    for a, b, fee, limit in chain_links:
        pair = (zone_names.get(a), zone_names.get(b))
        lk = by_pair.get(pair)  # type: ignore[arg-type]
        if lk is None or lk.fee != fee or (lk.limit_wh if lk.limit_wh is not None else 2**64 - 1) != limit:
            raise PlanError(f"chain link {a}->{b} (fee {fee}, limit {limit}) differs from the coordinator's network")
        f = int(result.flows.get(pair, 0))  # type: ignore[arg-type]
        flows.append(f)
        states.append(LinkState(index[pair[0]], index[pair[1]], fee, f, limit))  # type: ignore[index]
    lo, hi = _bounds(orders, filled, lambda o: index.get(zone_names.get(o.zone, ""), -1))
    if -1 in lo or -1 in hi:
        raise PlanError("an order's zone is not in the coordinator's network")
    k = len(network.zones)
    p = equilibrium_prices([lo.get(i, 0) for i in range(k)], [hi.get(i, MAX_PRICE) for i in range(k)], states)
    if p is None:
        raise PlanError("no zone prices satisfy the clearing rule for this allocation")
    prices = sorted((ids[z], p[index[z]]) for z in network.zones)
    rent = sum(f * (p[s.dst] - p[s.src]) for f, s in zip(flows, states, strict=True))
    return prices, flows, rent


def check(cp: CommitPlan, orders: Sequence[PlanOrder], chain_links: Sequence[ChainLink]) -> None:
    """The contract's clearing checks, in Python; raises :class:`PlanError` on the first."""
    copper = not chain_links
    zones = [z for z, _ in cp.prices]
    if zones != sorted(set(zones)):
        raise PlanError("zone prices must be for strictly ascending zones")
    zp = dict(cp.prices)
    net = {z: 0 for z in zones}  # sold - bought
    expected = {z: 0 for z in zones}  # outflow - inflow
    if copper and len(cp.prices) != 1:
        raise PlanError("a market without links takes exactly one price")
    for i, (a, b, fee, limit) in enumerate(chain_links):
        f = cp.flows[i]
        if a not in zp or b not in zp:
            raise PlanError(f"link {i}: a zone has no price")
        if f > limit:
            raise PlanError(f"link {i}: flow {f} above its limit {limit}")
        diff = zp[b] - zp[a]
        if (f > 0 and diff < fee) or (f < limit and diff > fee):
            raise PlanError(f"link {i}: price difference {diff} breaks the rule for flow {f} and fee {fee}")
        expected[a] += f
        expected[b] -= f
    by_id = {o.order_id: o for o in orders}
    if sorted(by_id) != [fid for fid, _, _ in cp.fills]:
        raise PlanError("one fill per live order, in ascending order id")
    for oid, q, p in cp.fills:
        o = by_id[oid]
        z = zones[0] if copper else o.zone
        if p != zp.get(z):
            raise PlanError(f"order {oid}: fill price {p} is not its zone price {zp.get(z)}")
        in_money = o.price > p if o.side == "bid" else o.price < p
        out_money = o.price < p if o.side == "bid" else o.price > p
        if q > o.qty_wh or (in_money and q != o.qty_wh) or (out_money and q != 0):
            raise PlanError(f"order {oid}: fill {q} of {o.qty_wh} at {p} breaks the price rule (limit {o.price})")
        net[z] += q if o.side == "offer" else -q
    for z in zones:
        if net[z] != expected[z]:
            raise PlanError(f"zone {z}: sold - bought = {net[z]}, flows say {expected[z]}")


def chunk_end(fills: Sequence[FillRow], start: int, size: int) -> int:
    """End of the chunk that starts at ``start`` and holds at most ``size`` fills, made of whole
    owner groups (at least one group, even if it is larger than ``size``)."""
    n = len(fills)
    end = min(n, start + max(1, size))
    if end >= n:
        return n
    while end > start and owner_group(fills[end][0]) == owner_group(fills[end - 1][0]):
        end -= 1
    if end == start:  # one group longer than size: take it whole
        end = start + 1
        while end < n and owner_group(fills[end][0]) == owner_group(fills[start][0]):
            end += 1
    return end


def readings_for(chunk: Sequence[FillRow], readings: Mapping[str, object]) -> list[object]:
    """The signed readings (``readings``: owner address -> reading) of a chunk's owners, in
    ascending address order as the contract takes them."""
    owners = {f"0x{(oid >> 31) & ((1 << 160) - 1):040x}" for oid, _, _ in chunk}
    lower = {k.lower(): v for k, v in readings.items()}
    return [lower[o] for o in sorted(owners, key=lambda a: int(a, 16)) if o in lower]
