"""Copper-plate clearing: one market, no network, no LP -- linear time in the book.

The aggregated curves are built with one ``bincount`` over a dense price axis (or over the
distinct prices when the price range is much wider than the book). The welfare-maximising
volume is where demand and supply cross; every unit whose bid price is at least its offer
price trades, so among welfare-optimal allocations this one has the largest volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._alloc import (
    Levels,
    allocate_to_orders,
    equilibrium_prices,
    zone_price_bounds,
)
from ._book import I64, Book, exact_bincount
from ._errors import SolverError

#: Use a dense price axis while it is at most this many times longer than the book.
_DENSE_FACTOR = 4
_DENSE_MIN = 1 << 16


@dataclass(frozen=True)
class CopperAllocation:
    filled: I64
    levels: Levels
    level_acc: I64
    price: int | None  # uniform clearing price, None when nothing trades


def clear_copper(book: Book) -> CopperAllocation:
    n = len(book)
    price, is_bid = book.price, book.is_bid
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return CopperAllocation(empty, Levels(empty, empty.astype(bool), empty, empty), empty, None)
    p_lo, p_hi = book._price_range or (int(price.min()), int(price.max()))
    width = p_hi - p_lo + 1
    if width <= max(_DENSE_FACTOR * n, _DENSE_MIN):
        axis = np.arange(p_lo, p_hi + 1, dtype=np.int64)
        key = (price - p_lo if p_lo else price) * 2
    else:
        axis, inverse = np.unique(price, return_inverse=True)
        key = inverse.astype(np.int64).reshape(-1) * 2
    key += is_bid  # level index: 2 * position on the price axis + (1 if bid)
    # a bin holds one side's Wh at one price: below 2**53 by validation
    agg = exact_bincount(key, book.qty_wh, 2 * axis.shape[0], bins_below_2_53=True)
    offer_qty, bid_qty = agg[0::2], agg[1::2]

    demand = np.cumsum(bid_qty[::-1])[::-1]  # Wh bid at >= axis price
    supply = np.cumsum(offer_qty)  # Wh offered at <= axis price
    volume = int(np.minimum(demand, supply).max())
    bid_acc = np.zeros_like(bid_qty)
    offer_acc = np.zeros_like(offer_qty)
    if volume > 0:
        b = int(np.flatnonzero(demand >= volume)[-1])  # marginal bid level
        a = int(np.searchsorted(supply, volume, side="left"))  # marginal offer level
        bid_acc[b + 1 :] = bid_qty[b + 1 :]
        bid_acc[b] = volume - (int(demand[b + 1]) if b + 1 < demand.shape[0] else 0)
        offer_acc[:a] = offer_qty[:a]
        offer_acc[a] = volume - (int(supply[a - 1]) if a > 0 else 0)
    level_acc = np.empty_like(agg)
    level_acc[0::2], level_acc[1::2] = offer_acc, bid_acc

    filled = allocate_to_orders(book, key, agg, level_acc)
    levels = Levels(
        zone=np.zeros(agg.shape[0], dtype=np.int64),
        is_bid=np.tile(np.array([False, True]), axis.shape[0]),
        price=np.repeat(axis, 2),
        qty=agg,
    )
    clearing_price = None
    if volume > 0:
        lo, hi = zone_price_bounds(1, levels, level_acc)
        prices = equilibrium_prices(lo, hi, [])
        if prices is None:  # pragma: no cover - would be an engine bug
            raise SolverError(f"no clearing price in [{lo[0]}, {hi[0]}]: allocation not optimal")
        clearing_price = prices[0]
    return CopperAllocation(filled, levels, level_acc, clearing_price)
