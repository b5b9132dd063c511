"""Exact-arithmetic helpers and the network post-processing (private modules, tested directly)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.market._alloc import LinkState, equilibrium_prices
from coordinator.market._book import Book, exact_bincount, exact_dot
from coordinator.market._network import _cancel_circulations
from coordinator.market.clearing import MAX_PRICE, OrderError, clear_book


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**53 - 1), st.integers(0, MAX_PRICE)), max_size=3000))
def test_exact_dot_equals_python(pairs: list[tuple[int, int]]) -> None:
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    assert exact_dot(a, b) == sum(x * y for x, y in pairs)


def test_exact_bincount_beyond_float_precision() -> None:
    w = np.full(5000, 2**32 - 1, dtype=np.int64)
    w[::7] = 2**32 - 3
    idx = np.arange(5000) % 3
    got = exact_bincount(idx, w * 300_000 // 2**20 * 2**20 + 1, 3)  # totals far above 2**53
    want = [int(sum(int(x) for x in (w * 300_000 // 2**20 * 2**20 + 1)[idx == k])) for k in range(3)]
    assert got.tolist() == want


def test_zero_fee_circulation_is_removed() -> None:
    # a -> b -> c -> a all carrying 5 Wh, plus 3 Wh a -> b that is real trade
    src, dst, fees = [0, 1, 2], [1, 2, 0], [0, 0, 0]
    assert _cancel_circulations(src, dst, fees, [8, 5, 5]) == [3, 0, 0]
    assert _cancel_circulations([0, 1], [1, 0], [0, 0], [4, 4]) == [0, 0]
    assert _cancel_circulations([0], [1], [2], [4]) == [4]


def test_equilibrium_prices_detect_a_non_optimal_allocation() -> None:
    # zone 0 price must be >= 10 (accepted offer) and <= 5 (rejected offer): no prices
    assert equilibrium_prices([10], [5], []) is None
    # a congested link lets the importing zone's price exceed the exporter's by more than the fee
    link = LinkState(0, 1, fee=2, flow=4, limit=4)
    assert equilibrium_prices([10, 20], [10, 20], [link]) == [10, 20]
    # an uncongested link with flow pins the difference to the fee
    link = LinkState(0, 1, fee=2, flow=3, limit=None)
    assert equilibrium_prices([0, 0], [100, 100], [link]) == [49, 51]
    assert equilibrium_prices([10, 20], [10, 20], [link]) is None


def test_book_built_directly_is_validated_before_clearing() -> None:
    one = np.ones(2, dtype=np.int64)
    book = Book(np.array([1, 1]), np.array([True, False]), one, one, one)
    try:
        clear_book(book)
    except ValueError as exc:
        assert "duplicate order id" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("duplicate ids were not rejected")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 400), st.integers(0, 2**31), st.sampled_from([1, 3, 7, 64]))
def test_chunked_dense_passes_match_one_chunk(n: int, seed: int, chunk: int) -> None:
    import coordinator.market._copper as copper

    rng = np.random.default_rng(seed)
    book = Book.from_arrays(
        rng.permutation(4 * n)[:n],
        rng.random(n) < 0.5,
        rng.integers(1, 50, n),
        rng.integers(3, 15, n),  # few prices: partly filled levels with many orders
        rng.integers(0, 5, n),
    )
    whole = clear_book(book)
    saved = copper._CHUNK
    copper._CHUNK = chunk
    try:
        chunked = clear_book(book)
    finally:
        copper._CHUNK = saved
    assert (chunked.filled_qty == whole.filled_qty).all()
    assert (chunked.price, chunked.welfare) == (whole.price, whole.welfare)


def test_validation_across_scan_chunks() -> None:
    n = 70_000  # three scan chunks
    ids = np.arange(n, dtype=np.int64) * 2
    side = np.arange(n) % 2 == 0
    qty, price = np.ones(n, dtype=np.int64), np.full(n, 5, dtype=np.int64)
    Book.from_arrays(ids, side, qty, price)  # valid
    dup = ids.copy()
    dup[32768] = dup[32767]  # ids stop ascending exactly at a chunk boundary
    with pytest.raises(OrderError, match=r"order 65534 \(index 32768\): id: duplicate"):
        Book.from_arrays(dup, side, qty, price)
    bad = qty.copy()
    bad[n - 1] = 0
    with pytest.raises(OrderError, match=rf"index {n - 1}\): qty_wh"):
        Book.from_arrays(ids, side, bad, price)
    high = price.copy()
    high[40_000] = MAX_PRICE + 1
    with pytest.raises(OrderError, match=r"index 40000\): price"):
        Book.from_arrays(ids, side, qty, high)
