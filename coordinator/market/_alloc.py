"""Shared steps of every clearing path, all in exact integers.

* :func:`allocate_to_orders` hands each price level's accepted quantity to its orders by the
  tie-breaking rule (time of posting ``seq``, then order id);
* :func:`zone_price_bounds` and :func:`equilibrium_prices` turn an allocation into the
  uniform clearing price(s). They double as an exact optimality certificate: prices exist
  exactly when no welfare-improving trade is left (LP complementary slackness).

A *level* is one (zone, side, price) step of the aggregated curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._book import I64, MAX_PRICE, Book

_NONE, _FULL, _PARTIAL = 0, 1, 2


def level_state(level_qty: I64, level_acc: I64) -> tuple[np.ndarray, bool]:
    """Per level: 0 nothing accepted, 1 fully accepted, 2 partly accepted; and whether any is 2."""
    state = np.zeros(level_qty.shape[0], dtype=np.int8)
    state[(level_acc == level_qty) & (level_qty > 0)] = _FULL
    partial_levels = (level_acc > 0) & (level_acc < level_qty)
    state[partial_levels] = _PARTIAL
    return state, bool(partial_levels.any())


def allocate_to_orders(book: Book, order_level: I64, level_qty: I64, level_acc: I64) -> I64:
    """Filled Wh per order given each level's accepted Wh (0 <= accepted <= level quantity).

    Orders of a fully accepted level fill completely; inside a partly accepted level, earlier
    ``seq`` fills first, then the lower order id.
    """
    state, any_partial = level_state(level_qty, level_acc)
    g = state[order_level]
    filled: I64 = book.qty_wh * (g == _FULL)
    if any_partial:
        part = np.flatnonzero(g == _PARTIAL)
        settle_partial(book, filled, part, order_level[part], level_acc)
    return filled


def settle_partial(book: Book, filled: I64, part: I64, lv: I64, level_acc: I64) -> None:
    """Fill the orders ``part`` (in levels ``lv``) of partly accepted levels, in priority order."""
    if part.shape[0] == 0:
        return
    order = np.lexsort((book.ids[part], book.seq[part], lv))
    part, lv = part[order], lv[order]
    q = book.qty_wh[part]
    before = np.cumsum(q) - q  # total < 2**53
    first = np.flatnonzero(np.r_[True, lv[1:] != lv[:-1]])
    group_base = np.repeat(before[first], np.diff(np.r_[first, lv.shape[0]]))
    room = level_acc[lv] - (before - group_base)
    filled[part] = np.clip(room, 0, q)


@dataclass(frozen=True)
class Levels:
    """Aggregated supply and demand steps; ``price`` ascends within each (zone, side)."""

    zone: I64
    is_bid: np.ndarray
    price: I64
    qty: I64


def zone_price_bounds(n_zones: int, levels: Levels, acc: I64) -> tuple[list[int], list[int]]:
    """Per zone, the interval of prices consistent with the allocation inside that zone.

    lower = max(0, highest accepted offer, highest bid with unfilled Wh);
    upper = min(MAX_PRICE, lowest accepted bid, lowest offer with unfilled Wh).
    """
    lo = np.zeros(n_zones, dtype=np.int64)
    hi = np.full(n_zones, MAX_PRICE, dtype=np.int64)
    bid, qty, zone, price = levels.is_bid, levels.qty, levels.zone, levels.price
    accepted = acc > 0
    unfilled = (acc < qty) & (qty > 0)
    for mask, target, ufunc in (
        (~bid & accepted, lo, np.maximum),
        (bid & unfilled, lo, np.maximum),
        (bid & accepted, hi, np.minimum),
        (~bid & unfilled, hi, np.minimum),
    ):
        if mask.any():
            ufunc.at(target, zone[mask], price[mask])
    return lo.tolist(), hi.tolist()


@dataclass(frozen=True)
class LinkState:
    """One directed link for pricing: flow ``flow`` from zone ``src`` to zone ``dst``."""

    src: int
    dst: int
    fee: int
    flow: int
    limit: int | None  # None = unlimited


def equilibrium_prices(lo: Sequence[int], hi: Sequence[int], links: Sequence[LinkState]) -> list[int] | None:
    """Zone prices satisfying every equilibrium condition, or ``None`` if none exist.

    Conditions: ``lo[z] <= p[z] <= hi[z]``; on a link with flow, ``p[dst] - p[src] >= fee``;
    on a link below its limit, ``p[dst] - p[src] <= fee``. These are difference constraints;
    their solutions form a lattice with a least and a greatest element (Bellman-Ford from a
    virtual zone). The rule: the midpoint of the two, rounded down -- which is itself a solution.
    With one zone this is the midpoint of the interval of market-clearing prices.
    """
    k = len(lo)
    # constraint p[a] - p[b] <= w  ->  edge b -> a with weight w; node k is the virtual zero.
    edges: list[tuple[int, int, int]] = []
    for z in range(k):
        edges.append((k, z, int(hi[z])))
        edges.append((z, k, -int(lo[z])))
    for link in links:
        if link.limit is None or link.flow < link.limit:
            edges.append((link.src, link.dst, link.fee))
        if link.flow > 0:
            edges.append((link.dst, link.src, -link.fee))
    upper = _shortest_from(k, edges, k + 1)
    lower_neg = _shortest_from(k, [(b, a, w) for a, b, w in edges], k + 1)
    if upper is None or lower_neg is None:
        return None
    prices = []
    for z in range(k):
        p_max, p_min = upper[z] - upper[k], -(lower_neg[z] - lower_neg[k])
        if p_min > p_max:
            return None
        prices.append((p_min + p_max) // 2)
    return prices


def _shortest_from(src: int, edges: list[tuple[int, int, int]], n: int) -> list[int] | None:
    inf = float("inf")
    dist: list[float] = [inf] * n
    dist[src] = 0
    for _ in range(n):
        changed = False
        for a, b, w in edges:
            da = dist[a]
            if da != inf and da + w < dist[b]:
                dist[b] = da + w
                changed = True
        if not changed:
            return [int(d) for d in dist]  # every node reaches every other through node src
    return None  # negative cycle: no prices exist
