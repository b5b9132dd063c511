"""Network-aware clearing: zones, per-link grid fees and transfer limits, solved as an LP.

Orders are first reduced to aggregated steps per (zone, side, price); the LP is solved on those
steps with HiGHS (dual simplex), so its size is the number of distinct price levels, not of
orders, and it has one balance row per zone:

    maximise  sum(bid price * accepted) - sum(offer price * accepted) - sum(fee * link flow)
    subject to, for every zone z:
        accepted offers in z + flow into z == accepted bids in z + flow out of z
        0 <= accepted <= level quantity,   0 <= flow <= link limit

The constraint matrix is a network matrix (totally unimodular), so an optimal vertex is
integral; the float answer is rounded and then re-checked in exact integers: balances, bounds,
and an equilibrium price vector that proves optimality (see ``_alloc.equilibrium_prices``).
Energy may pass through intermediate zones (paying each link's fee and respecting each limit).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import highspy
import numpy as np

from ._alloc import Levels, LinkState, allocate_to_orders, equilibrium_prices, zone_price_bounds
from ._book import I64, MAX_PRICE, Book, exact_bincount
from ._errors import NetworkError, OrderError, SolverError

MAX_LIMIT_WH = 2**62


@dataclass(frozen=True)
class Link:
    """A directed connection: energy sold in ``from_zone`` may be delivered to ``to_zone``.

    ``fee`` (token base units per Wh, 0..MAX_PRICE) is added to the price of every Wh carried;
    ``limit_wh`` caps the Wh carried per interval (``None`` = unlimited).
    """

    from_zone: str
    to_zone: str
    fee: int = 0
    limit_wh: int | None = None


@dataclass(frozen=True)
class Network:
    """Zones and the directed links between them. Trades inside a zone are free and unlimited.

    A pair of zones without a link cannot trade directly (energy may still route through
    other zones). Give two links for a two-way connection.
    """

    zones: tuple[str, ...]
    links: tuple[Link, ...] = ()
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        zones = tuple(self.zones)
        links = tuple(self.links)
        object.__setattr__(self, "zones", zones)
        object.__setattr__(self, "links", links)
        index: dict[str, int] = {}
        for z in zones:
            if not isinstance(z, str) or not z:
                raise NetworkError(f"zone names must be non-empty strings, got {z!r}")
            if z in index:
                raise NetworkError(f"zone {z!r} listed twice")
            index[z] = len(index)
        seen: set[tuple[str, str]] = set()
        for link in links:
            name = f"link {link.from_zone!r} -> {link.to_zone!r}"
            for end in (link.from_zone, link.to_zone):
                if end not in index:
                    raise NetworkError(f"{name}: unknown zone {end!r}")
            if link.from_zone == link.to_zone:
                raise NetworkError(f"{name}: a link joins two different zones")
            if (link.from_zone, link.to_zone) in seen:
                raise NetworkError(f"{name}: listed twice")
            seen.add((link.from_zone, link.to_zone))
            if type(link.fee) is not int or not 0 <= link.fee <= MAX_PRICE:
                raise NetworkError(f"{name}: fee must be an integer in 0..{MAX_PRICE}, got {link.fee!r}")
            if link.limit_wh is not None and (
                type(link.limit_wh) is not int or not 0 <= link.limit_wh <= MAX_LIMIT_WH
            ):
                raise NetworkError(
                    f"{name}: limit_wh must be None or an integer in 0..2**62, got {link.limit_wh!r}"
                )
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_links(cls, links: Iterable[Link], zones: Sequence[str] = ()) -> Network:
        """Zones are ``zones`` plus every link end, in order of first mention."""
        links = tuple(links)
        names = list(dict.fromkeys([*zones, *(e for lk in links for e in (lk.from_zone, lk.to_zone))]))
        return cls(tuple(names), links)

    def zone_index(self, name: str) -> int | None:
        return self._index.get(name)


@dataclass(frozen=True)
class NetworkAllocation:
    filled: I64
    levels: Levels
    level_acc: I64
    flows: list[int]  # Wh per link, in ``network.links`` order
    zone_prices: list[int] | None  # per network zone; None when nothing trades
    order_zone: I64


def _order_zones(book: Book, network: Network) -> I64:
    mapping = np.empty(len(book.zone_names), dtype=np.int64)
    for i, name in enumerate(book.zone_names):
        z = network.zone_index(name)
        mapping[i] = -1 if z is None else z
    if book.zone is None:
        order_zone = np.full(len(book), mapping[0], dtype=np.int64)
    else:
        order_zone = mapping[book.zone]
    if len(book) and int(order_zone.min()) < 0:
        index = int(np.flatnonzero(order_zone < 0)[0])
        name = book.zone_names[0 if book.zone is None else int(book.zone[index])]
        raise OrderError(
            f"unknown zone {name!r} (network zones: {', '.join(network.zones)})",
            order_id=int(book.ids[index]),
            index=index,
            field="zone",
        )
    return order_zone


def clear_network(book: Book, network: Network) -> NetworkAllocation:
    order_zone = _order_zones(book, network)
    k, links = len(network.zones), network.links
    if len(book) == 0:
        e = np.zeros(0, dtype=np.int64)
        return NetworkAllocation(e, Levels(e, e.astype(bool), e, e), e, [0] * len(links), None, e)
    span = MAX_PRICE + 1
    key = (order_zone * 2 + book.is_bid) * span + book.price
    uniq, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.astype(np.int64).reshape(-1)
    zs = uniq // span
    # a level holds one side's Wh in one zone at one price: below 2**53 by validation
    qty = exact_bincount(inverse, book.qty_wh, uniq.shape[0], bins_below_2_53=True)
    levels = Levels(zone=zs >> 1, is_bid=(zs & 1).astype(bool), price=uniq % span, qty=qty)
    total_offer = int(levels.qty[~levels.is_bid].sum())
    caps = [total_offer if lk.limit_wh is None else min(lk.limit_wh, total_offer) for lk in links]
    src = [network._index[lk.from_zone] for lk in links]  # links were checked against zones
    dst = [network._index[lk.to_zone] for lk in links]
    fees = [lk.fee for lk in links]

    x = _solve_lp(k, levels, src, dst, fees, caps)
    acc = x[: uniq.shape[0]]
    flows = [int(f) for f in x[uniq.shape[0] :]]
    _check_exact(k, levels, acc, src, dst, flows, caps)
    flows = _cancel_circulations(src, dst, fees, flows)

    filled = allocate_to_orders(book, inverse, levels.qty, acc)
    prices = None
    if int(acc.sum()) > 0:
        lo, hi = zone_price_bounds(k, levels, acc)
        states = [
            LinkState(s, d, f, fl, lk.limit_wh)
            for s, d, f, fl, lk in zip(src, dst, fees, flows, links, strict=True)
        ]
        prices = equilibrium_prices(lo, hi, states)
        if prices is None:
            raise SolverError("the LP answer failed the exact optimality check (no equilibrium prices)")
    return NetworkAllocation(filled, levels, acc, flows, prices, order_zone)


def _solve_lp(
    k: int, levels: Levels, src: list[int], dst: list[int], fees: list[int], caps: list[int]
) -> I64:
    n_lv, n_lk = levels.qty.shape[0], len(src)
    sign = np.where(levels.is_bid, -1.0, 1.0)
    cost = np.concatenate([sign * levels.price, np.asarray(fees, dtype=np.float64)])
    upper = np.concatenate([levels.qty.astype(np.float64), np.asarray(caps, dtype=np.float64)])
    # column-wise matrix: a level has one entry (its zone); a link -1 at its source, +1 at its sink
    starts = np.concatenate([np.arange(n_lv + 1), n_lv + 2 * np.arange(1, n_lk + 1)]).astype(np.int32)
    link_rows, link_vals = [], []
    for s, d in zip(src, dst, strict=True):
        pair = sorted([(s, -1.0), (d, 1.0)])
        link_rows += [pair[0][0], pair[1][0]]
        link_vals += [pair[0][1], pair[1][1]]
    rows = np.concatenate([levels.zone, np.asarray(link_rows, dtype=np.int64)]).astype(np.int32)
    vals = np.concatenate([sign, np.asarray(link_vals, dtype=np.float64)])

    lp = highspy.HighsLp()
    lp.num_col_ = n_lv + n_lk
    lp.num_row_ = k
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(n_lv + n_lk)
    lp.col_upper_ = upper
    lp.row_lower_ = np.zeros(k)
    lp.row_upper_ = np.zeros(k)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = starts
    lp.a_matrix_.index_ = rows
    lp.a_matrix_.value_ = vals
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    h.setOptionValue("solver", "simplex")
    h.setOptionValue("threads", 1)
    if h.passModel(lp) != highspy.HighsStatus.kOk:
        raise SolverError("HiGHS rejected the clearing LP")
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise SolverError(f"HiGHS did not solve the clearing LP: {h.modelStatusToString(status)}")
    x = np.rint(np.asarray(h.getSolution().col_value, dtype=np.float64))
    x = np.clip(x, 0.0, upper)
    return x.astype(np.int64)


def _check_exact(
    k: int, levels: Levels, acc: I64, src: list[int], dst: list[int], flows: list[int], caps: list[int]
) -> None:
    if bool((acc < 0).any() or (acc > levels.qty).any()):
        raise SolverError("the LP answer accepts more than a level holds")
    supply = exact_bincount(levels.zone[~levels.is_bid], acc[~levels.is_bid], k).tolist()
    demand = exact_bincount(levels.zone[levels.is_bid], acc[levels.is_bid], k).tolist()
    net = [s - d for s, d in zip(supply, demand, strict=True)]
    for s, d, f, cap in zip(src, dst, flows, caps, strict=True):
        if not 0 <= f <= cap:
            raise SolverError("the LP answer exceeds a link limit")
        net[s] -= f
        net[d] += f
    if any(net):
        raise SolverError(f"the LP answer does not balance every zone exactly: {net}")


def _cancel_circulations(src: list[int], dst: list[int], fees: list[int], flows: list[int]) -> list[int]:
    """Remove flow that goes round in a cycle (possible only where the cycle's fees are all 0)."""
    flows = list(flows)
    while True:
        cycle = _find_cycle(src, dst, flows)
        if cycle is None:
            return flows
        amount = min(flows[e] for e in cycle)
        for e in cycle:
            flows[e] -= amount


def _find_cycle(src: list[int], dst: list[int], flows: list[int]) -> list[int] | None:
    out: dict[int, list[int]] = {}
    for e, f in enumerate(flows):
        if f > 0:
            out.setdefault(src[e], []).append(e)
    color: dict[int, int] = {}
    for start in list(out):
        if color.get(start):
            continue
        stack: list[tuple[int, int]] = [(start, 0)]
        path: list[int] = []
        color[start] = 1
        while stack:
            node, i = stack[-1]
            edges = out.get(node, [])
            if i < len(edges):
                stack[-1] = (node, i + 1)
                e = edges[i]
                nxt = dst[e]
                c = color.get(nxt, 0)
                if c == 1:
                    # back edge: the cycle is the part of the path from nxt, plus e
                    cyc = [e]
                    for pe in reversed(path):
                        cyc.append(pe)
                        if src[pe] == nxt:
                            break
                    return cyc
                if c == 0:
                    color[nxt] = 1
                    path.append(e)
                    stack.append((nxt, 0))
            else:
                color[node] = 2
                stack.pop()
                if path:
                    path.pop()
    return None
