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
    allocate_to_orders,
    equilibrium_prices,
    level_state,
    settle_partial,
)
from ._book import I64, Book, exact_bincount, exact_dot
from ._errors import SolverError

#: Use a dense price axis while it is at most this many times longer than the book.
_DENSE_FACTOR = 4
_DENSE_MIN = 1 << 16


#: Orders per chunk in the dense passes: the chunk's temporaries stay in the CPU cache.
_CHUNK = 1 << 15


def _chunk_keys(book: Book, start: int, stop: int, base: int, out: I64) -> I64:
    """Level index ``2 * (price - base) + (1 if bid)`` of orders ``start:stop``, into ``out``."""
    k = out[: stop - start]
    np.subtract(book.price[start:stop], base, out=k)
    np.left_shift(k, 1, out=k)
    np.add(k, book.is_bid[start:stop], out=k, casting="unsafe")
    return k


def _dense_aggregate(book: Book, base: int, n_levels: int) -> I64:
    """Wh per level on a dense price axis, chunk by chunk.

    float64 accumulation is exact: every bin is one side's Wh at one price, and each side's total
    is below 2**53 (validated), so every partial sum is an exactly representable integer.
    """
    n = len(book)
    agg = np.zeros(n_levels, dtype=np.float64)
    buf = np.empty(min(n, _CHUNK), dtype=np.int64)
    weights = np.empty(min(n, _CHUNK), dtype=np.float64)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        k = _chunk_keys(book, start, stop, base, buf)
        w = weights[: stop - start]
        np.copyto(w, book.qty_wh[start:stop], casting="unsafe")  # exact: < 2**32
        agg += np.bincount(k, weights=w, minlength=n_levels)
    return agg.astype(np.int64)


def _dense_fill(book: Book, base: int, level_qty: I64, level_acc: I64) -> I64:
    """Like ``allocate_to_orders`` on the dense axis, without materialising every order's key."""
    n = len(book)
    state, any_partial = level_state(level_qty, level_acc)
    filled = np.empty(n, dtype=np.int64)
    m = min(n, _CHUNK)
    buf, g_buf, b_buf = np.empty(m, dtype=np.int64), np.empty(m, dtype=np.int8), np.empty(m, dtype=bool)
    parts = []
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        k = _chunk_keys(book, start, stop, base, buf)
        g, b = g_buf[: stop - start], b_buf[: stop - start]
        np.take(state, k, out=g)
        np.equal(g, 1, out=b)
        np.multiply(book.qty_wh[start:stop], b, out=filled[start:stop])
        if any_partial:
            np.equal(g, 2, out=b)
            if b.any():
                parts.append(np.flatnonzero(b) + start)
    if parts:
        part = np.concatenate(parts)
        lv = 2 * (book.price[part] - base) + book.is_bid[part]
        settle_partial(book, filled, part, lv, level_acc)
    return filled


@dataclass(frozen=True)
class CopperAllocation:
    filled: I64
    price: int | None  # uniform clearing price, None when nothing trades
    volume: int
    bid_value: int  # sum of accepted Wh * bid limit
    offer_cost: int  # sum of accepted Wh * offer limit


def clear_copper(book: Book) -> CopperAllocation:
    n = len(book)
    price, is_bid = book.price, book.is_bid
    if n == 0:
        return CopperAllocation(np.zeros(0, dtype=np.int64), None, 0, 0, 0)
    p_lo, p_hi = book._price_range or (int(price.min()), int(price.max()))
    width = p_hi - p_lo + 1
    dense = width <= max(_DENSE_FACTOR * n, _DENSE_MIN)
    key: I64 | None = None
    if dense:
        axis = np.arange(p_lo, p_hi + 1, dtype=np.int64)
        agg = _dense_aggregate(book, p_lo, 2 * width)
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

    if key is None:
        filled = _dense_fill(book, p_lo, agg, level_acc)
    else:
        filled = allocate_to_orders(book, key, agg, level_acc)
    clearing_price = None
    if volume > 0:
        lo, hi = _price_interval(axis, bid_qty, bid_acc, offer_qty, offer_acc, b, a)
        prices = equilibrium_prices([lo], [hi], [])
        if prices is None:  # pragma: no cover - would be an engine bug
            raise SolverError(f"no clearing price in [{lo}, {hi}]: allocation not optimal")
        clearing_price = prices[0]
    return CopperAllocation(
        filled=filled,
        price=clearing_price,
        volume=volume,
        bid_value=exact_dot(bid_acc, axis),
        offer_cost=exact_dot(offer_acc, axis),
    )


def _price_interval(
    axis: I64, bid_qty: I64, bid_acc: I64, offer_qty: I64, offer_acc: I64, b: int, a: int
) -> tuple[int, int]:
    """Prices at which every accepted order trades willingly and no rejected Wh would trade.

    lower = max(highest accepted offer, highest bid with Wh left); upper = min(lowest accepted
    bid, lowest offer with Wh left). ``b`` and ``a`` are the marginal bid and offer levels.
    """
    lo, hi = int(axis[a]), int(axis[b])
    if bid_acc[b] < bid_qty[b]:
        lo = max(lo, int(axis[b]))
    else:
        below = np.flatnonzero(bid_qty[:b])
        if below.size:
            lo = max(lo, int(axis[below[-1]]))
    if offer_acc[a] < offer_qty[a]:
        hi = min(hi, int(axis[a]))
    else:
        above = np.flatnonzero(offer_qty[a + 1 :])
        if above.size:
            hi = min(hi, int(axis[a + 1 + above[0]]))
    return lo, hi
