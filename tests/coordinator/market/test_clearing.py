"""Named cases for coordinator/market/clearing.py: each with its expected result."""

from __future__ import annotations

import numpy as np
import pytest
from clearing_oracle import assert_optimal, check_result

from coordinator.market.clearing import (
    MAX_PRICE,
    MAX_QTY_WH,
    Book,
    ClearingError,
    Fill,
    Link,
    MechanismError,
    Network,
    NetworkError,
    Order,
    OrderError,
    clear,
    clear_book,
)


def bid(i: int, qty: int, price: int, zone: str = "default", seq: int = 0) -> Order:
    return Order(i, "bid", qty, price, zone, seq)


def offer(i: int, qty: int, price: int, zone: str = "default", seq: int = 0) -> Order:
    return Order(i, "offer", qty, price, zone, seq)


def checked(orders: list[Order], mechanism: str = "uniform", network: Network | None = None):  # type: ignore[no-untyped-def]
    r = clear(orders, mechanism, network)
    check_result(orders, network, r)
    assert_optimal(orders, network, r)
    return r


# --- degenerate books -------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["uniform", "pay-as-bid"])
def test_empty_book(mechanism: str) -> None:
    r = checked([], mechanism)
    assert (r.fills, r.price, r.volume_wh, r.welfare, r.zone_prices) == ([], None, 0, 0, {})


@pytest.mark.parametrize("side", ["bid", "offer"])
def test_one_side_empty(side: str) -> None:
    r = checked([Order(1, side, 10, 5), Order(2, side, 3, 7)])  # type: ignore[arg-type]
    assert r.fills == [] and r.price is None and r.volume_wh == 0


def test_no_crossing() -> None:
    r = checked([bid(1, 10, 4), offer(2, 10, 5)])
    assert r.fills == [] and r.price is None and r.welfare == 0


def test_all_orders_at_one_price() -> None:
    orders = [bid(1, 5, 7), bid(2, 5, 7, seq=1), offer(3, 4, 7), offer(4, 3, 7, seq=1)]
    r = checked(orders)
    # 7 Wh trade at 7; bid 1 (earlier) is served before bid 2
    assert r.fills == [Fill(1, 5, 7), Fill(2, 2, 7), Fill(3, 4, 7), Fill(4, 3, 7)]
    assert (r.price, r.volume_wh, r.welfare) == (7, 7, 0)


def test_single_huge_order_against_many_small() -> None:
    orders = [bid(0, MAX_QTY_WH, 100)] + [offer(i, 1, 50 + i) for i in range(1, 11)]
    r = checked(orders)
    assert r.volume_wh == 10
    assert r.fills[0] == Fill(0, 10, r.price)  # type: ignore[arg-type]
    # bid unfilled at 100, all offers accepted (highest 60): price in [100, 100]
    assert r.price == 100


def test_one_wh_orders() -> None:
    r = checked([bid(1, 1, 10), offer(2, 1, 4)])
    assert r.fills == [Fill(1, 1, 7), Fill(2, 1, 7)]  # midpoint of [4, 10]
    assert (r.volume_wh, r.welfare, r.buyers_pay, r.sellers_receive) == (1, 6, 7, 7)


def test_maximum_uint_values() -> None:
    orders = [bid(2**63 - 1, MAX_QTY_WH, MAX_PRICE, seq=2**63 - 1), offer(0, MAX_QTY_WH, 0)]
    r = checked(orders)
    assert r.volume_wh == MAX_QTY_WH
    assert r.price == MAX_PRICE // 2
    assert r.welfare == MAX_QTY_WH * MAX_PRICE
    p = checked(orders, "pay-as-bid")
    assert p.fills == [Fill(0, MAX_QTY_WH, 0), Fill(2**63 - 1, MAX_QTY_WH, MAX_PRICE)]


def test_many_maximum_orders_stay_exact() -> None:
    orders = [bid(i, MAX_QTY_WH, MAX_PRICE - i) for i in range(300)]
    orders += [offer(1000 + i, MAX_QTY_WH, i) for i in range(300)]
    for network in (None, Network(("default",))):
        r = checked(orders, network=network)
        assert r.volume_wh == 300 * MAX_QTY_WH
        assert r.welfare == sum(MAX_QTY_WH * (MAX_PRICE - 2 * i) for i in range(300))


# --- price rule and tie-breaking --------------------------------------------------------------


def test_price_is_midpoint_of_clearing_interval() -> None:
    # bids 10@100, 5@90; offers 8@80, 10@95 -> 10 Wh trade; interval [95, 95]
    r = checked([bid(1, 10, 100), bid(2, 5, 90), offer(3, 8, 80), offer(4, 10, 95)])
    assert r.price == 95 and r.volume_wh == 10 and r.welfare == 170
    # all bids and offers accepted fully: interval = [highest offer, lowest bid] = [80, 90]
    r = checked([bid(1, 5, 90), offer(2, 5, 80)])
    assert r.price == 85
    r = checked([bid(1, 5, 90), offer(2, 5, 81)])
    assert r.price == 85  # (81 + 90) // 2: rounded down


def test_rejected_orders_bound_the_price() -> None:
    # rejected bid at 88 lifts the floor; rejected offer at 92 caps the ceiling
    r = checked([bid(1, 5, 100), bid(2, 5, 88), offer(3, 5, 70), offer(4, 5, 92)])
    assert r.volume_wh == 5 and r.price == 90  # interval [88, 92]


def test_ties_broken_by_seq_then_id() -> None:
    orders = [bid(9, 4, 10, seq=1), bid(3, 4, 10, seq=2), bid(5, 4, 10, seq=1), offer(1, 6, 10)]
    r = checked(orders)
    assert {f.order_id: f.qty_wh for f in r.fills} == {5: 4, 9: 2, 1: 6}


def test_better_price_beats_earlier_time() -> None:
    r = checked([bid(1, 5, 10, seq=0), bid(2, 5, 11, seq=9), offer(3, 5, 1)])
    assert [f.order_id for f in r.fills] == [2, 3]


def test_pay_as_bid_settles_each_order_at_its_limit() -> None:
    orders = [bid(1, 10, 100), bid(2, 5, 90), offer(3, 8, 80), offer(4, 10, 95)]
    r = checked(orders, "pay-as-bid")
    assert r.fills == [Fill(1, 10, 100), Fill(3, 8, 80), Fill(4, 2, 95)]
    assert (r.buyers_pay, r.sellers_receive, r.operator_revenue) == (1000, 830, 170)


# --- network ---------------------------------------------------------------------------------

NET = Network.from_links([Link("a", "b", fee=3, limit_wh=4), Link("b", "a", fee=3)])


def test_congested_link_splits_zone_prices() -> None:
    orders = [bid(1, 10, 100, "b"), bid(2, 5, 90, "a", seq=1), offer(3, 8, 80, "a"), offer(4, 10, 95, "b")]
    r = checked(orders, network=NET)
    assert r.flows == {("a", "b"): 4}
    assert r.zone_prices == {"a": 90, "b": 95} and r.price is None
    assert r.fills == [Fill(1, 10, 95), Fill(2, 4, 90), Fill(3, 8, 90), Fill(4, 6, 95)]
    assert (r.welfare, r.fee_revenue, r.congestion_rent) == (138, 12, 8)


def test_uncongested_import_pays_the_fee() -> None:
    net = Network.from_links([Link("a", "b", fee=5)])
    r = checked([offer(1, 10, 50, "a"), bid(2, 10, 100, "b")], network=net)
    assert r.flows == {("a", "b"): 10}
    assert r.zone_prices["b"] - r.zone_prices["a"] == 5
    assert r.fee_revenue == 50 and r.welfare == 10 * (100 - 50 - 5)


def test_fee_larger_than_spread_blocks_trade() -> None:
    net = Network.from_links([Link("a", "b", fee=60)])
    r = checked([offer(1, 10, 50, "a"), bid(2, 10, 100, "b")], network=net)
    assert r.fills == [] and r.flows == {}


def test_zero_limit_and_missing_link_isolate_zones() -> None:
    net = Network(("a", "b", "c"), (Link("a", "b", 0, 0),))
    orders = [offer(1, 10, 50, "a"), bid(2, 10, 100, "b"), bid(3, 10, 100, "c")]
    r = checked(orders, network=net)
    assert r.fills == []


def test_energy_routes_through_an_intermediate_zone() -> None:
    net = Network.from_links([Link("a", "b", 2, 7), Link("b", "c", 3)])
    r = checked([offer(1, 10, 50, "a"), bid(2, 10, 100, "c")], network=net)
    assert r.flows == {("a", "b"): 7, ("b", "c"): 7}
    assert r.fee_revenue == 35 and r.volume_wh == 7


def test_network_pay_as_bid() -> None:
    orders = [bid(1, 10, 100, "b"), bid(2, 5, 90, "a", seq=1), offer(3, 8, 80, "a"), offer(4, 10, 95, "b")]
    r = checked(orders, "pay-as-bid", NET)
    assert r.fills == [Fill(1, 10, 100), Fill(2, 4, 90), Fill(3, 8, 80), Fill(4, 6, 95)]


# --- bad input: an error naming the order, never a partial result -----------------------------


@pytest.mark.parametrize(
    ("order", "field"),
    [
        (Order(7, "bid", 0, 5), "qty_wh"),
        (Order(7, "bid", -3, 5), "qty_wh"),
        (Order(7, "bid", MAX_QTY_WH + 1, 5), "qty_wh"),
        (Order(7, "offer", 1, -1), "price"),
        (Order(7, "offer", 1, MAX_PRICE + 1), "price"),
        (Order(7, "offer", 1, 2.5), "price"),  # type: ignore[arg-type]
        (Order(7, "offer", True, 2), "qty_wh"),  # type: ignore[arg-type]
        (Order(7, "sell", 1, 2), "side"),  # type: ignore[arg-type]
        (Order(7, "bid", 1, 2, seq=-1), "seq"),
        (Order(7, "bid", 1, 2, zone=""), "zone"),
    ],
)
def test_bad_order_is_named(order: Order, field: str) -> None:
    with pytest.raises(OrderError, match=rf"^order 7 \(index 1\): {field}: ") as exc:
        clear([bid(1, 1, 1), order])
    assert (exc.value.order_id, exc.value.index, exc.value.field) == (7, 1, field)


def test_bad_id_is_named() -> None:
    with pytest.raises(OrderError, match=r"index 0\): id:"):
        clear([Order(-1, "bid", 1, 1)])


def test_duplicate_order_id() -> None:
    with pytest.raises(OrderError, match=r"^order 4 \(index 2\): id: duplicate order id \(also at index 0\)"):
        clear([bid(4, 1, 1), offer(5, 1, 1), offer(4, 2, 1)])


def test_unknown_zone() -> None:
    with pytest.raises(OrderError, match=r"order 2 \(index 1\): zone: unknown zone 'x'"):
        clear([bid(1, 1, 1, "a"), offer(2, 1, 1, "x")], network=NET)


def test_unknown_mechanism() -> None:
    with pytest.raises(MechanismError, match="pay-as-clear"):
        clear([], "pay-as-clear")
    assert issubclass(MechanismError, ClearingError)


@pytest.mark.parametrize(
    ("zones", "links", "match"),
    [
        (("a", "a"), (), "listed twice"),
        (("a",), (Link("a", "b"),), "unknown zone 'b'"),
        (("a",), (Link("a", "a"),), "two different zones"),
        (("a", "b"), (Link("a", "b", -1),), "fee must be"),
        (("a", "b"), (Link("a", "b", 0, -5),), "limit_wh must be"),
        (("a", "b"), (Link("a", "b"), Link("a", "b")), "listed twice"),
        (("",), (), "non-empty"),
    ],
)
def test_bad_network(zones: tuple[str, ...], links: tuple[Link, ...], match: str) -> None:
    with pytest.raises(NetworkError, match=match):
        Network(zones, links)


# --- bulk entry point ------------------------------------------------------------------------


def test_bulk_matches_objects_and_dense_matches_sparse() -> None:
    rng = np.random.default_rng(7)
    n = 3000
    for lo, hi in ((100, 400), (0, MAX_PRICE)):  # dense price axis, then distinct prices
        ids = rng.permutation(10 * n)[:n]
        side = rng.random(n) < 0.5
        qty = rng.integers(1, 1000, n)
        price = rng.integers(lo, hi, n)
        seq = rng.integers(0, 50, n)
        book = Book.from_arrays(ids, side, qty, price, seq)
        bulk = clear_book(book)
        orders = [
            Order(int(i), "bid" if s else "offer", int(q), int(p), seq=int(t))
            for i, s, q, p, t in zip(ids, side, qty, price, seq, strict=True)
        ]
        objs = checked(orders)
        assert bulk.fills() == objs.fills
        assert (bulk.price, bulk.welfare, bulk.volume_wh) == (objs.price, objs.welfare, objs.volume_wh)
        assert int(bulk.filled_qty[side].sum()) == int(bulk.filled_qty[~side].sum()) == bulk.volume_wh


def test_bulk_validation_names_the_order() -> None:
    with pytest.raises(OrderError, match=r"order 11 \(index 1\): qty_wh"):
        Book.from_arrays([10, 11], np.array([True, False]), [1, 0], [1, 1])
    with pytest.raises(OrderError, match=r"order 10 \(index 2\): id: duplicate"):
        Book.from_arrays([10, 11, 10], np.array([True, False, True]), [1, 1, 1], [1, 1, 1])
    with pytest.raises(OrderError, match=r"order 5 \(index 2\): id: duplicate order id \(also at index 1\)"):
        Book.from_arrays([2**60, 5, 5], np.array([True, False, True]), [1, 1, 1], [1, 1, 1])  # sparse ids
    with pytest.raises(TypeError):
        Book.from_arrays([1], np.array([1]), [1], [1])
    with pytest.raises(TypeError):
        Book.from_arrays([1], np.array([True]), [1.5], [1])
