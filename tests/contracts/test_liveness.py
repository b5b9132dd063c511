"""If the operator stops, every owner gets its locks back by itself; pause never blocks that."""

from __future__ import annotations

from brownie import chain
from conftest import BID, CLEAR_TIMEOUT, DEPOSIT, OFFER, SETTLE_TIMEOUT, Interval, free_locked, lapsed, reverts_with


def _wait(seconds):
    chain.sleep(seconds)
    chain.mine()


def test_recover_after_the_clear_deadline(d):
    iv = Interval(d).open()
    b = iv.post(d.buyers[0], BID, 100, 50)
    s = iv.post(d.sellers[0], OFFER, 100, 40)
    with reverts_with("MarketIntervalNotLapsed"):
        d.market.recover([b], {"from": d.buyers[0]})
    assert lapsed(d, iv.k) is False
    _wait(CLEAR_TIMEOUT + 1)
    assert lapsed(d, iv.k) is True
    d.market.setPaused(True, {"from": d.admin})  # pause never stops recovery
    tx = d.market.recover([b], {"from": d.buyers[0]})
    assert tx.events["OrderRecovered"]["released"] == 5_000
    d.market.recover([s], {"from": d.sellers[0]})
    assert free_locked(d, d.buyers[0]) == (DEPOSIT, 0)
    assert free_locked(d, d.sellers[0]) == (DEPOSIT, 0)
    with reverts_with("MarketOrderNotFound"):
        d.market.recover([b], {"from": d.buyers[0]})


def test_a_cleared_interval_never_lapses_anyone_settles_it(d):
    iv = Interval(d).open()
    b = iv.post(d.buyers[1], BID, 100, 50)
    s = iv.post(d.sellers[1], OFFER, 100, 40)
    iv.clear(45, {b: 100, s: 100})
    _wait(SETTLE_TIMEOUT + CLEAR_TIMEOUT + 1)
    assert lapsed(d, iv.k) is False
    with reverts_with("MarketIntervalNotLapsed"):
        d.market.recover([b], {"from": d.buyers[1]})
    iv.settle([], sender=d.buyers[1])
    assert free_locked(d, d.buyers[1]) == (DEPOSIT - 4_500, 0)


def test_only_the_owner_recovers(d):
    iv = Interval(d).open()
    b = iv.post(d.buyers[2], BID, 100, 50)
    _wait(CLEAR_TIMEOUT + 1)
    with reverts_with("MarketNotOrderOwner"):
        d.market.recover([b], {"from": d.buyers[3]})


def test_settled_orders_cannot_be_recovered(d):
    iv = Interval(d).open()
    b = iv.post(d.buyers[0], BID, 100, 50)
    iv.clear(50, {})
    iv.settle([])
    _wait(SETTLE_TIMEOUT + CLEAR_TIMEOUT + 1)
    with reverts_with("MarketIntervalNotLapsed"):
        d.market.recover([b], {"from": d.buyers[0]})


def test_withdrawals_continue_while_paused(d):
    d.market.setPaused(True, {"from": d.admin})
    d.market.withdraw(DEPOSIT, {"from": d.sellers[3]})
    assert free_locked(d, d.sellers[3]) == (0, 0)
