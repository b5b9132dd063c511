"""The commit plan: the engine's result turned into exactly what the market contract accepts
(zone prices, link flows, one fill per order at its zone price, chunks of whole owner groups)."""

from __future__ import annotations

import random

import pytest

from coordinator.market.clearing import Link, Network, Order, clear
from coordinator.market.commit_plan import CommitPlan, PlanError, PlanOrder, check, chunk_end, plan, readings_for

K = 7


def _oid(owner: int, bid: bool, nonce: int = 0) -> int:
    return (K << 192) | (int(bid) << 191) | (owner << 31) | nonce


def _book(spec: list[tuple[int, str, int, int, int]]) -> list[PlanOrder]:
    """(owner, side, qty, limit, zone) -> PlanOrders with chain-style ids."""
    return [
        PlanOrder(_oid(owner, side == "bid", i), side, qty, price, zone, f"0x{owner:040x}")
        for i, (owner, side, qty, price, zone) in enumerate(spec)
    ]


def _run(orders: list[PlanOrder], network: Network | None, links, names) -> CommitPlan:
    engine = [Order(i, o.side, o.qty_wh, o.price, zone=names.get(o.zone, str(o.zone)), seq=i) for i, o in enumerate(orders)]
    result = clear(engine, network=network)
    return plan(orders, result, list(range(len(orders))), links, network, names)


def test_issue_attack_book_clears_at_one_price_with_the_keen_bid():
    orders = _book([(1, "offer", 1, 190, 0), (2, "offer", 1, 10, 0), (3, "bid", 1, 100, 0), (4, "bid", 1, 300, 0)])
    cp = _run(orders, None, [], {})
    assert cp.prices == [(0, 145)] and cp.flows == [] and cp.rent == 0
    assert {oid: q for oid, q, _ in cp.fills} == {orders[0].order_id: 0, orders[1].order_id: 1, orders[2].order_id: 0, orders[3].order_id: 1}
    assert {p for _, _, p in cp.fills} == {145}


def test_nothing_trades_still_gets_a_price_that_fills_nobody():
    orders = _book([(1, "offer", 5, 200, 0), (2, "bid", 5, 100, 0)])
    cp = _run(orders, None, [], {})
    assert all(q == 0 for _, q, _ in cp.fills)
    assert 100 <= cp.prices[0][1] <= 200


def test_two_zones_congested_link_prices_and_rent():
    net = Network(("a", "b"), (Link("a", "b", fee=5, limit_wh=30), Link("b", "a", fee=5, limit_wh=30)))
    names = {0: "a", 1: "b"}
    links = [(0, 1, 5, 30), (1, 0, 5, 30)]
    orders = _book([(1, "offer", 50, 90, 0), (2, "bid", 50, 200, 1)])
    cp = _run(orders, net, links, names)
    assert cp.flows == [30, 0]
    (za, pa), (zb, pb) = cp.prices
    assert (za, zb) == (0, 1) and pb - pa >= 5
    assert cp.rent == 30 * (pb - pa)  # fees x flows + congestion rent
    assert {q for _, q, _ in cp.fills} == {30}


def test_a_zone_without_orders_is_priced_too():
    net = Network(("a", "b", "c"), (Link("a", "b", fee=1, limit_wh=None), Link("b", "c", fee=1, limit_wh=None)))
    names = {0: "a", 1: "b", 2: "c"}
    links = [(0, 1, 1, 2**64 - 1), (1, 2, 1, 2**64 - 1)]
    orders = _book([(1, "offer", 10, 50, 0), (2, "bid", 10, 100, 2)])
    cp = _run(orders, net, links, names)
    assert [z for z, _ in cp.prices] == [0, 1, 2] and cp.flows == [10, 10]


def test_chain_and_coordinator_must_agree_on_the_network():
    net = Network(("a", "b"), (Link("a", "b", fee=5, limit_wh=30),))
    orders = _book([(1, "offer", 5, 90, 0), (2, "bid", 5, 200, 1)])
    with pytest.raises(PlanError, match="differs"):
        _run(orders, net, [(0, 1, 6, 30)], {0: "a", 1: "b"})
    with pytest.raises(PlanError, match="no links registered"):
        _run(orders, net, [], {0: "a", 1: "b"})
    with pytest.raises(PlanError, match="no zone network"):
        _run(orders, None, [(0, 1, 5, 30)], {0: "a", 1: "b"})


def test_pay_as_bid_is_refused():
    orders = _book([(1, "offer", 5, 90, 0), (2, "bid", 5, 200, 0)])
    result = clear([Order(i, o.side, o.qty_wh, o.price, seq=i) for i, o in enumerate(orders)], mechanism="pay-as-bid")
    with pytest.raises(PlanError, match="uniform"):
        plan(orders, result, [0, 1], [], None, {})


def test_check_refuses_what_the_contract_refuses():
    orders = _book([(1, "offer", 10, 50, 0), (2, "offer", 10, 100, 0), (3, "bid", 12, 200, 0)])
    good = CommitPlan([(0, 100)], [], [(orders[0].order_id, 10, 100), (orders[1].order_id, 2, 100), (orders[2].order_id, 12, 100)], 0)
    check(good, orders, [])
    for fills, match in (
        ([(orders[0].order_id, 9, 100), (orders[1].order_id, 3, 100), (orders[2].order_id, 12, 100)], "price rule"),
        ([(orders[0].order_id, 10, 99), (orders[1].order_id, 2, 100), (orders[2].order_id, 12, 100)], "zone price"),
        ([(orders[0].order_id, 10, 100), (orders[1].order_id, 1, 100), (orders[2].order_id, 12, 100)], "sold - bought"),
    ):
        with pytest.raises(PlanError, match=match):
            check(CommitPlan([(0, 100)], [], fills, 0), orders, [])


@pytest.mark.parametrize("seed", range(20))
def test_random_books_always_give_a_plan_the_rules_accept(seed):
    rng = random.Random(seed)
    net = Network(("a", "b"), (Link("a", "b", fee=3, limit_wh=rng.randint(0, 40)), Link("b", "a", fee=3, limit_wh=None)))
    names = {0: "a", 1: "b"}
    links = [(0, 1, 3, net.links[0].limit_wh), (1, 0, 3, 2**64 - 1)]
    spec = [(rng.randint(1, 6), rng.choice(["bid", "offer"]), rng.randint(1, 20), rng.randint(50, 150), rng.randint(0, 1)) for _ in range(25)]
    orders = _book(spec)
    cp = _run(orders, net, links, names)  # plan() runs check() itself
    assert len(cp.fills) == len(orders)


def test_chunks_never_split_an_owner_group():
    fills = [(_oid(o, False, i), 1, 1) for i, o in enumerate([1, 1, 1, 2, 3, 3])] + [(_oid(1, True, 9), 1, 1)]
    fills.sort()
    i, chunks = 0, []
    while i < len(fills):
        e = chunk_end(fills, i, 2)
        chunks.append(fills[i:e])
        i = e
    assert [len(c) for c in chunks] == [3, 1, 2, 1]  # a group of 3 goes whole even over size 2


def test_readings_for_a_chunk_in_ascending_owner_order():
    fills = [(_oid(5, False), 1, 1), (_oid(2, True), 1, 1)]
    readings = {f"0x{5:040x}": "r5", f"0x{2:040x}": "r2", f"0x{9:040x}": "r9"}
    assert readings_for(fills, readings) == ["r2", "r5"]
