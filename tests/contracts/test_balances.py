"""Internal balances: deposit once, withdraw what is free, any time."""

from __future__ import annotations

from conftest import BID, DEPOSIT, Interval, free_locked, reverts_with


def test_deposit_moves_tokens_into_the_free_balance(d):
    p = d.sellers[0]
    wallet = d.token.balanceOf(p)
    tx = d.market.deposit(123, {"from": p})
    assert tx.events["Deposited"]["amount"] == 123
    assert free_locked(d, p) == (DEPOSIT + 123, 0)
    assert d.token.balanceOf(p) == wallet - 123


def test_withdraw_moves_free_balance_to_the_wallet(d):
    p = d.sellers[0]
    wallet = d.token.balanceOf(p)
    tx = d.market.withdraw(DEPOSIT, {"from": p})
    assert tx.events["Withdrawn"]["amount"] == DEPOSIT
    assert free_locked(d, p) == (0, 0)
    assert d.token.balanceOf(p) == wallet + DEPOSIT


def test_locked_funds_cannot_be_withdrawn(d):
    p = d.buyers[0]
    iv = Interval(d).open()
    iv.post(p, BID, 1_000, 100)  # locks 100,000
    free, locked = free_locked(d, p)
    assert locked == 100_000 and free == DEPOSIT - 100_000
    with reverts_with("MarketInsufficientBalance"):
        d.market.withdraw(free + 1, {"from": p})
    d.market.withdraw(free, {"from": p})


def test_zero_amounts_and_strangers_are_refused(d):
    with reverts_with("MarketZeroAmount"):
        d.market.deposit(0, {"from": d.sellers[0]})
    with reverts_with("MarketZeroAmount"):
        d.market.withdraw(0, {"from": d.sellers[0]})
    with reverts_with("MarketNotParticipant"):
        d.market.deposit(1, {"from": d.outsider})
    with reverts_with("MarketInsufficientBalance"):
        d.market.withdraw(1, {"from": d.outsider})


def test_order_pulls_only_the_missing_part_from_the_wallet(d):
    p = d.buyers[2]
    d.market.withdraw(DEPOSIT - 50, {"from": p})  # 50 left
    wallet = d.token.balanceOf(p)
    iv = Interval(d).open()
    tx = d.market.postOrder(iv.k, BID, 10, 20, {"from": p})  # lock 200
    assert tx.events["Deposited"]["amount"] == 150
    assert d.token.balanceOf(p) == wallet - 150
    assert free_locked(d, p) == (0, 200)


def test_balances_beyond_96_bits_are_refused(d):
    huge = 2**96
    d.token.mint(d.outsider, huge, {"from": d.admin})
    d.market.registerParticipant(d.outsider, b"\x01" * 32, 0, {"from": d.admin})
    with reverts_with("MarketBalanceOverflow"):
        d.market.deposit(huge, {"from": d.outsider})
