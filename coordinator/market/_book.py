"""The order book as columns (numpy arrays), its validation, and exact integer sums.

A :class:`Book` is what the engine works on. The ``Order``-object API builds one; the bulk API
takes one directly, so a million orders never become a million Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ._errors import OrderError

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

#: Largest price the engine accepts (token base units per Wh): the contract's ``uint24``.
MAX_PRICE = 2**24 - 1
#: Largest order quantity the engine accepts (Wh): the contract's ``uint32``.
MAX_QTY_WH = 2**32 - 1
#: Order ids and ``seq`` are non-negative and fit a signed 64-bit integer.
MAX_ORDER_ID = 2**63 - 1
#: Total quantity of one side of a book must stay below this (keeps every sum exact).
MAX_SIDE_TOTAL_WH = 2**53 - 1

_FLOAT_EXACT = 2**53


@dataclass(frozen=True, eq=False)
class Book:
    """Column form of an order book; position ``i`` in every array is one order.

    ``zone`` indexes ``zone_names``; ``None`` puts every order in ``zone_names[0]``.
    Build it with :meth:`from_arrays`, which converts and validates.
    """

    ids: I64
    is_bid: Bool
    qty_wh: I64
    price: I64
    seq: I64
    zone: npt.NDArray[np.intp] | None = None
    zone_names: tuple[str, ...] = ("default",)
    #: (min, max) price, recorded by :func:`validate`
    _price_range: tuple[int, int] | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def from_arrays(
        cls,
        ids: npt.ArrayLike,
        is_bid: npt.ArrayLike,
        qty_wh: npt.ArrayLike,
        price: npt.ArrayLike,
        seq: npt.ArrayLike | None = None,
        zone: npt.ArrayLike | None = None,
        zone_names: Sequence[str] = ("default",),
    ) -> Book:
        """Convert the columns to the engine's dtypes and validate every order.

        ``seq`` defaults to the position in the arrays (earlier = posted earlier).
        Raises :class:`OrderError` naming the first offending order.
        """
        ids_a = _int_column(ids, "id")
        n = ids_a.shape[0]
        side = np.asarray(is_bid)
        if side.dtype != np.bool_:
            raise TypeError("is_bid must be a boolean array (True = bid, False = offer)")
        qty_a = _int_column(qty_wh, "qty_wh")
        price_a = _int_column(price, "price")
        seq_a = np.arange(n, dtype=np.int64) if seq is None else _int_column(seq, "seq")
        zone_a = None
        if zone is not None:
            zone_a = np.asarray(zone)
            if zone_a.dtype.kind not in "iu":
                raise TypeError("zone must be an integer array of indices into zone_names")
            zone_a = zone_a.astype(np.intp, copy=False)
        for name, col in (("is_bid", side), ("qty_wh", qty_a), ("price", price_a), ("seq", seq_a)):
            if col.shape != (n,):
                raise ValueError(f"column {name} has shape {col.shape}, expected ({n},)")
        if zone_a is not None and zone_a.shape != (n,):
            raise ValueError(f"column zone has shape {zone_a.shape}, expected ({n},)")
        book = cls(ids_a, side, qty_a, price_a, seq_a, zone_a, tuple(zone_names))
        validate(book)
        return book


def _int_column(values: npt.ArrayLike, name: str) -> I64:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"column {name} must be one-dimensional")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"column {name} must hold integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and int(arr.max()) > MAX_ORDER_ID:
        raise ValueError(f"column {name} holds values above 2**63-1")
    return arr.astype(np.int64, copy=False)


def _fail(book: Book, bad: Bool | I64, field: str, message: str) -> OrderError:
    index = int(np.flatnonzero(bad)[0]) if bad.dtype == np.bool_ else int(bad[0])
    return OrderError(message, order_id=int(book.ids[index]), index=index, field=field)


def validate(book: Book) -> None:
    """Check every order of ``book``; raise :class:`OrderError` for the first bad one.

    Checks: quantity in 1..MAX_QTY_WH, price in 0..MAX_PRICE, id and seq non-negative, ids
    unique, zone indices valid, each side's total below 2**53 Wh. Costs a few linear passes.
    """
    n = len(book)
    if n == 0:
        return
    qty, price = book.qty_wh, book.price
    q_lo, q_hi, p_lo, p_hi, seq_lo, ascending, total = _scan(book)
    if q_lo < 1 or q_hi > MAX_QTY_WH:
        bad = (qty < 1) | (qty > MAX_QTY_WH)
        q = int(qty[np.flatnonzero(bad)[0]])
        raise _fail(book, bad, "qty_wh", f"must be a whole number of Wh in 1..{MAX_QTY_WH}, got {q}")
    if p_lo < 0 or p_hi > MAX_PRICE:
        bad = (price < 0) | (price > MAX_PRICE)
        p = int(price[np.flatnonzero(bad)[0]])
        raise _fail(book, bad, "price", f"must be an integer in 0..{MAX_PRICE} per Wh, got {p}")
    if seq_lo < 0:
        raise _fail(book, book.seq < 0, "seq", "must be non-negative")
    _check_zones(book)
    if ascending:
        if int(book.ids[0]) < 0:
            raise _fail(book, book.ids < 0, "id", f"must be non-negative, got {int(book.ids[0])}")
    else:
        _check_ids(book)
    _check_totals(book, total)
    object.__setattr__(book, "_price_range", (p_lo, p_hi))


#: Orders per chunk when scanning: one chunk of every column stays in the CPU cache.
_SCAN_CHUNK = 1 << 15


def _scan(book: Book) -> tuple[int, int, int, int, int, bool, int]:
    """One cache-friendly sweep: qty min/max, price min/max, seq min, ids ascending?, total Wh."""
    n = len(book)
    ids, qty, price, seq = book.ids, book.qty_wh, book.price, book.seq
    q_lo, q_hi, p_lo, p_hi, seq_lo, total = 2**63, -(2**63), 2**63, -(2**63), 2**63, 0
    ascending = True
    for start in range(0, n, _SCAN_CHUNK):
        stop = min(n, start + _SCAN_CHUNK)
        q, p = qty[start:stop], price[start:stop]
        q_lo, q_hi = min(q_lo, int(q.min())), max(q_hi, int(q.max()))
        p_lo, p_hi = min(p_lo, int(p.min())), max(p_hi, int(p.max()))
        seq_lo = min(seq_lo, int(seq[start:stop].min()))
        total += int(q.sum())  # valid quantities sum below 2**47 per chunk; invalid ones fail above
        if ascending:
            lo = start - 1 if start else 0
            chunk_ids = ids[lo:stop]
            ascending = bool((chunk_ids[1:] > chunk_ids[:-1]).all())
    return q_lo, q_hi, p_lo, p_hi, seq_lo, ascending, total


def _check_zones(book: Book) -> None:
    if book.zone is not None and (int(book.zone.min()) < 0 or int(book.zone.max()) >= len(book.zone_names)):
        bad = (book.zone < 0) | (book.zone >= len(book.zone_names))
        raise _fail(book, bad, "zone", "zone index outside zone_names")


def _check_totals(book: Book, total: int) -> None:
    """Each side's total must stay exactly representable in float64 (far from int64 limits)."""
    n, qty = len(book), book.qty_wh
    if total > MAX_SIDE_TOTAL_WH:
        bid_total = int(qty[book.is_bid].sum())
        if bid_total > MAX_SIDE_TOTAL_WH or total - bid_total > MAX_SIDE_TOTAL_WH:
            raise OrderError(
                f"the book's total quantity per side must stay below 2**53 Wh (got {total})",
                order_id=int(book.ids[n - 1]),
                index=n - 1,
                field="qty_wh",
            )


def _check_ids(book: Book) -> None:
    ids = book.ids
    n = ids.shape[0]
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0:
        raise _fail(book, ids < 0, "id", f"must be non-negative, got {int(ids[ids < 0][0])}")
    if hi - lo < 4 * n + 1024:
        # dense ids (the usual case: sequential order ids): count them
        counts = np.bincount(ids - lo if lo else ids, minlength=1)
        if int(counts.max()) <= 1:
            return
        dup_value = int(np.flatnonzero(counts > 1)[0]) + lo
    else:
        s = np.sort(ids)
        same = s[1:] == s[:-1]
        if not same.any():
            return
        dup_value = int(s[1:][same][0])
    where = np.flatnonzero(ids == dup_value)
    raise OrderError(
        f"duplicate order id (also at index {int(where[0])})",
        order_id=dup_value,
        index=int(where[1]),
        field="id",
    )


def exact_bincount(
    index: npt.NDArray[np.intp] | I64, weights: I64, minlength: int, *, bins_below_2_53: bool = False
) -> I64:
    """``np.bincount`` with integer weights, exact: each bin's sum must be < 2**63.

    Uses float64 accumulation when every partial sum stays below 2**53 (exact there): the caller
    may vouch for that with ``bins_below_2_53`` (e.g. bins of one book side), else the total is
    checked. Otherwise two passes over 26-bit halves.
    """
    if bins_below_2_53 or (int(weights.sum()) if weights.size else 0) < _FLOAT_EXACT:
        return np.bincount(index, weights=weights, minlength=minlength).astype(np.int64)
    lo = np.bincount(index, weights=weights & (2**26 - 1), minlength=minlength).astype(np.int64)
    hi = np.bincount(index, weights=weights >> 26, minlength=minlength).astype(np.int64)
    return (hi << 26) + lo


def exact_dot(a: I64, b: I64) -> int:
    """Exact ``sum(a * b)`` as a Python int, for 0 <= a < 2**53 and 0 <= b <= MAX_PRICE."""
    if a.size == 0:
        return 0
    if a.size < 64:
        return sum(x * y for x, y in zip(a.tolist(), b.tolist(), strict=True))
    lo = (a & (2**26 - 1)) * b  # < 2**50
    hi = (a >> 26) * b  # < 2**51
    chunk = 1024  # 1024 terms < 2**51 sum below 2**61
    pad = (-a.size) % chunk
    if pad:
        lo = np.concatenate([lo, np.zeros(pad, dtype=np.int64)])
        hi = np.concatenate([hi, np.zeros(pad, dtype=np.int64)])
    lo_sum = sum(lo.reshape(-1, chunk).sum(axis=1).tolist())
    hi_sum = sum(hi.reshape(-1, chunk).sum(axis=1).tolist())
    return int((hi_sum << 26) + lo_sum)
