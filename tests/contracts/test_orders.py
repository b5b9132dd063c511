"""Posting and cancelling orders, order ids, order slots."""

from __future__ import annotations

from brownie import chain
from conftest import (
    BID,
    CLEAR_TIMEOUT,
    DEPOSIT,
    OFFER,
    RATE,
    Interval,
    decode_order_id,
    free_locked,
    plain,
    reverts_with,
)


def test_bid_locks_escrow_and_offer_locks_collateral(d):
    iv = Interval(d).open()
    tx = d.market.postOrder(iv.k, BID, 500, 120, {"from": d.buyers[0]})
    ev = tx.events["OrderPosted"]
    assert (ev["interval"], ev["owner"], ev["side"], ev["qty"], ev["price"], ev["zone"], ev["locked"]) == (
        iv.k, d.buyers[0], BID, 500, 120, 0, 500 * 120
    )
    assert free_locked(d, d.buyers[0]) == (DEPOSIT - 60_000, 60_000)
    oid = iv.post(d.sellers[0], OFFER, 400, 90)
    assert iv.orders[oid]["lock"] == 400 * RATE
    assert free_locked(d, d.sellers[0]) == (DEPOSIT - 400 * RATE, 400 * RATE)
    assert d.market.intervalOf(iv.k)[1] == 2


def test_order_id_describes_the_order(d):
    iv = Interval(d).open()
    oid = iv.post(d.sellers[1], OFFER, 10, 10)
    assert decode_order_id(oid) == (iv.k, False, d.sellers[1].address.lower(), 0)
    assert oid == (iv.k << 192) | (int(d.sellers[1].address, 16) << 31)
    assert plain(d.market.orderOf(oid)) == (d.sellers[1].address, OFFER, 10, 10, 10 * RATE, True)
    bid = iv.post(d.sellers[1], BID, 10, 10)
    assert bid > oid  # bids sort after offers within an interval
    assert d.market.orderOf(12345)[0] == "0x0000000000000000000000000000000000000000"


def test_posting_needs_an_open_interval_and_positive_terms(d):
    iv = Interval(d)
    with reverts_with("MarketIntervalNotOpen"):
        d.market.postOrder(iv.k, BID, 1, 1, {"from": d.buyers[0]})
    iv.open()
    with reverts_with("MarketZeroQuantity"):
        d.market.postOrder(iv.k, BID, 0, 1, {"from": d.buyers[0]})
    with reverts_with("MarketZeroPrice"):
        d.market.postOrder(iv.k, BID, 1, 0, {"from": d.buyers[0]})
    with reverts_with("MarketNotParticipant"):
        d.market.postOrder(iv.k, BID, 1, 1, {"from": d.outsider})
    chain.sleep(CLEAR_TIMEOUT + 1)
    chain.mine()
    with reverts_with("MarketIntervalNotOpen"):  # past clearBy the interval takes no orders
        d.market.postOrder(iv.k, BID, 1, 1, {"from": d.buyers[0]})


def test_cancel_releases_the_lock_while_open(d):
    iv = Interval(d).open()
    oid = iv.post(d.buyers[0], BID, 100, 50)
    tx = d.market.cancelOrder(oid, {"from": d.buyers[0]})
    ev = tx.events["OrderCancelled"]
    assert (ev["orderId"], ev["owner"], ev["released"]) == (oid, d.buyers[0], 5_000)
    assert free_locked(d, d.buyers[0]) == (DEPOSIT, 0)
    assert d.market.intervalOf(iv.k)[1] == 0
    assert d.market.orderOf(oid)[5] is False
    with reverts_with("MarketOrderNotFound"):
        d.market.cancelOrder(oid, {"from": d.buyers[0]})


def test_only_the_owner_cancels_and_only_while_open(d):
    iv = Interval(d).open()
    oid = iv.post(d.buyers[0], BID, 100, 50)
    with reverts_with("MarketNotOrderOwner"):
        d.market.cancelOrder(oid, {"from": d.buyers[1]})
    iv.close()
    with reverts_with("MarketIntervalNotOpen"):
        d.market.cancelOrder(oid, {"from": d.buyers[0]})


def test_an_account_has_sixteen_orders_in_flight(d):
    p = d.buyers[3]
    iv = Interval(d).open()
    ids = [iv.post(p, BID, 1, 1) for _ in range(d.market.ORDER_SLOTS())]
    with reverts_with("MarketTooManyOrders"):
        d.market.postOrder(iv.k, BID, 1, 1, {"from": p})
    d.market.cancelOrder(ids[0], {"from": p})
    iv.post(p, BID, 1, 1)  # the freed slot is reused


def test_a_settled_order_frees_its_slot(d):
    p = d.buyers[3]
    first = Interval(d).open()
    for _ in range(d.market.ORDER_SLOTS()):
        first.post(p, BID, 1, 1)
    first.clear(1, {})
    first.settle([])
    second = Interval(d).open()
    oid = second.post(p, BID, 1, 1)
    assert decode_order_id(oid)[3] == 16 << 4  # counter 16, slot 0
    assert not d.market.orderOf(sorted(first.orders)[0])[5]  # the settled order is no longer live


def test_first_order_rewrites_an_allocated_slot(d):
    iv = Interval(d).open()
    tx = d.market.postOrder(iv.k, BID, 10, 10, {"from": d.buyers[0]})
    assert tx.gas_used < 60_000


def test_attack_one_stuck_order_no_longer_blocks_free_slots(d):
    """One order stuck in an unsettled interval used to block its owner's 17th order even with
    15 slots free; now posting takes any free slot."""
    p = d.buyers[2]
    stuck = Interval(d).open()
    stuck.post(p, BID, 1, 1)
    other = Interval(d).open()
    ids = [other.post(p, BID, 1, 1) for _ in range(15)]
    for oid in ids:
        d.market.cancelOrder(oid, {"from": p})
    oid = other.post(p, BID, 1, 1)  # the 17th order: slot 0 is still held, slot 1 is free
    assert decode_order_id(oid)[3] == (16 << 4) | 1
    for _ in range(14):
        other.post(p, BID, 1, 1)
    with reverts_with("MarketTooManyOrders"):  # now all 16 slots hold live orders
        d.market.postOrder(other.k, BID, 1, 1, {"from": p})
