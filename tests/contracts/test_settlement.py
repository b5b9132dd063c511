"""Imbalance settlement from each party's own signed reading, chunked; the worked example."""

from __future__ import annotations

from brownie import chain
from conftest import (
    BID,
    CHANGE_DELAY,
    DEPOSIT,
    IMB_BUY,
    IMB_SELL,
    OFFER,
    RATE,
    SETTLE_TIMEOUT,
    Interval,
    fee_free,
    free_locked,
    params,
    reverts_with,
    sign_reading,
)


def _set_params(d, **kw):
    d.market.scheduleParameters(params(d.operator, d.fee, **kw), {"from": d.admin})
    chain.sleep(CHANGE_DELAY + 1)
    d.market.applyScheduled({"from": d.outsider})


def test_worked_example_from_the_natspec(d):
    """Imbalance buy 50, sell 10, collateral 60, price 100: A sells 10 and exports 6, B buys 10
    at limit 120 and imports 7."""
    _set_params(d, rate=60, imb_buy=50, imb_sell=10)
    d.market.deposit(1_000, {"from": d.fee})
    iv = Interval(d).open()
    s = iv.post(d.sellers[0], OFFER, 10, 90)
    b = iv.post(d.buyers[0], BID, 10, 120)
    assert free_locked(d, d.sellers[0]) == (DEPOSIT - 600, 600)
    assert free_locked(d, d.buyers[0]) == (DEPOSIT - 1_200, 1_200)
    iv.clear(100, {s: 10, b: 10})
    fee0 = fee_free(d)
    tx = iv.settle([sign_reading(d, d.sellers[0], iv.k, 6), sign_reading(d, d.buyers[0], iv.k, 0, 7)])
    ev = tx.events["FillsSettled"]
    got = dict(zip(ev["orderIds"], zip(ev["deliveredWh"], ev["amounts"], ev["penalties"], strict=True), strict=True))
    assert got[s] == (6, 1_000, 200) and got[b] == (7, 1_000, 30)
    assert free_locked(d, d.sellers[0]) == (DEPOSIT - 600 + 1_400, 0)
    assert free_locked(d, d.buyers[0]) == (DEPOSIT - 1_200 + 230, 0)
    assert fee_free(d) - fee0 == 170
    assert 600 + 1_200 == 1_400 + 230 + 170
    imb = tx.events["ImbalanceSettled"]
    assert (imb["charges"], imb["refunds"]) == (200, 30)


def test_no_reading_counts_as_the_worst_case_and_never_pays_better(d):
    d.market.deposit(1_000, {"from": d.fee})
    outcomes = {}
    for signed in (False, True):
        iv = Interval(d).open()
        s = iv.post(d.sellers[0], OFFER, 10, 90)
        b = iv.post(d.buyers[0], BID, 10, 120)
        iv.clear(100, {s: 10, b: 10})
        before = (free_locked(d, d.sellers[0])[0], free_locked(d, d.buyers[0])[0])
        readings = [sign_reading(d, d.sellers[0], iv.k, 4), sign_reading(d, d.buyers[0], iv.k, 0, 4)] if signed else []
        if not signed:  # the operator cannot settle without them; after settleBy anyone can
            with reverts_with("MarketReadingMissing"):
                iv.settle(readings)
            chain.sleep(SETTLE_TIMEOUT + 1)
        iv.settle(readings)
        after = (free_locked(d, d.sellers[0])[0], free_locked(d, d.buyers[0])[0])
        outcomes[signed] = (after[0] - before[0], after[1] - before[1])
    lock_s, lock_b = 10 * RATE, 10 * 120
    # No reading: seller delivered nothing, buyer used all it bought.
    assert outcomes[False] == (lock_s + 1_000 - 10 * IMB_BUY, lock_b - 1_000)
    assert outcomes[True] == (lock_s + 1_000 - 6 * IMB_BUY, lock_b - 1_000 + 6 * IMB_SELL)
    assert outcomes[True][0] > outcomes[False][0] and outcomes[True][1] > outcomes[False][1]


def test_attack_colluding_seller_reading_cannot_touch_the_buyers_escrow(d):
    """A seller at limit 1 and the operator once took a buyer's whole escrow with a reading for
    energy never delivered. Now the buyer pays the one price for its fill whatever the seller
    signs, and its own reading (import 0) gets it the imbalance refund."""
    d.market.deposit(1_000, {"from": d.fee})
    deltas = []
    for seller_claims in (0, 10):
        iv = Interval(d).open()
        s = iv.post(d.sellers[1], OFFER, 10, 1)
        b = iv.post(d.buyers[1], BID, 10, 300)
        iv.close()
        iv.commit_prices(300)
        with reverts_with("MarketFillBreaksPriceRule"):  # the offer is in the money: filled in full
            iv.commit(iv.fills({s: 5, b: 5}))
        iv.chunks.clear()
        iv.commit(iv.fills({s: 10, b: 10}))
        before = free_locked(d, d.buyers[1])[0]
        iv.settle([sign_reading(d, d.sellers[1], iv.k, seller_claims), sign_reading(d, d.buyers[1], iv.k, 0, 0)])
        deltas.append(free_locked(d, d.buyers[1])[0] - before)
    assert deltas[0] == deltas[1] == 3_000 - 3_000 + 10 * IMB_SELL  # escrow back - paid + refund


def test_honest_parties_never_beyond_their_limits(d):
    """Any price the contract accepts keeps each trade within the limit (price rule)."""
    iv = Interval(d).open()
    s = iv.post(d.sellers[0], OFFER, 10, 100)
    b = iv.post(d.buyers[0], BID, 10, 100)
    iv.close()
    iv.commit_prices(101)
    with reverts_with("MarketFillBreaksPriceRule"):  # the bid would pay above its limit
        iv.commit(iv.fills({s: 10, b: 10}))


def test_chunked_settlement_last_chunk_first_and_never_twice(d):
    iv = Interval(d).open()
    s0 = iv.post(d.sellers[0], OFFER, 10, 90)
    s1 = iv.post(d.sellers[1], OFFER, 10, 90)
    b0 = iv.post(d.buyers[0], BID, 10, 120)
    b1 = iv.post(d.buyers[1], BID, 10, 120)
    iv.close()
    iv.commit_prices(100)
    fills = iv.fills({s0: 10, s1: 10, b0: 10, b1: 10})
    iv.commit(fills[:2], last=False)
    with reverts_with("MarketIntervalNotCleared"):
        iv.settle([], chunk=0)
    iv.commit(fills[2:])
    with reverts_with("MarketChunkNotNext"):
        iv.settle([], chunk=0)
    with reverts_with("MarketFillsMismatch"):
        d.market.settle(iv.k, 1, iv.settlement([(b0, 10, 100), (b1, 9, 100)]), [], {"from": d.operator})
    buyers = [sign_reading(d, d.buyers[0], iv.k, 0, 10), sign_reading(d, d.buyers[1], iv.k, 0, 10)]
    with reverts_with("MarketNotOperator"):
        iv.settle(buyers, chunk=1, sender=d.outsider)
    iv.settle(buyers, chunk=1)
    with reverts_with("MarketChunkNotNext"):
        iv.settle(buyers, chunk=1)
    tx = iv.settle([sign_reading(d, d.sellers[0], iv.k, 10), sign_reading(d, d.sellers[1], iv.k, 10)], chunk=0)
    assert tx.events["IntervalSettled"]["deliveredWh"] == 20
    with reverts_with("MarketIntervalAlreadySettled"):
        iv.settle([], chunk=0)


def test_after_the_settle_deadline_anyone_settles(d):
    iv = Interval(d).open()
    s = iv.post(d.sellers[0], OFFER, 10, 90)
    b = iv.post(d.buyers[0], BID, 10, 120)
    iv.clear(100, {s: 10, b: 10})
    chain.sleep(SETTLE_TIMEOUT + 1)
    iv.settle([sign_reading(d, d.sellers[0], iv.k, 10)], sender=d.buyers[0])
    assert free_locked(d, d.sellers[0]) == (DEPOSIT + 1_000, 0)
    assert free_locked(d, d.buyers[0]) == (DEPOSIT - 1_000, 0)


def test_refunds_need_the_balancing_party_to_cover_them(d):
    iv = Interval(d).open()
    s = iv.post(d.sellers[0], OFFER, 10, 90)
    b = iv.post(d.buyers[0], BID, 10, 120)
    iv.clear(100, {s: 10, b: 10})
    readings = [sign_reading(d, d.buyers[0], iv.k, 0, 0), sign_reading(d, d.sellers[0], iv.k, 10)]
    with reverts_with("MarketBalancingShortfall"):
        iv.settle(readings)
    d.market.deposit(10 * IMB_SELL, {"from": d.fee})
    iv.settle(readings)
    assert fee_free(d) == 0


def test_readings_are_checked(d):
    iv = Interval(d).open()
    s = iv.post(d.sellers[0], OFFER, 10, 90)
    b = iv.post(d.buyers[0], BID, 10, 120)
    iv.clear(100, {s: 10, b: 10})
    with reverts_with("MarketReadingBadSignature"):  # the operator forging a seller's reading
        iv.settle([sign_reading(d, d.sellers[0], iv.k, 10, signer=d.operator)])
    with reverts_with("MarketReadingWrongInterval"):
        iv.settle([sign_reading(d, d.sellers[0], iv.k + 1, 10)])
    r = sign_reading(d, d.sellers[0], iv.k, 10)
    with reverts_with("MarketReadingsNotAscending"):
        d.market.settle(iv.k, 0, iv.settlement(iv.chunks[0]), [r, r], {"from": d.operator})


def test_attack_operator_settles_early_or_omits_a_reading(d):
    """Before settleBy the operator cannot settle a fill without its owner's reading (so not
    before readings exist), and a reading the participant put on chain counts even if the
    operator leaves it out."""
    iv = Interval(d).open()
    s = iv.post(d.sellers[0], OFFER, 10, 90)
    b = iv.post(d.buyers[0], BID, 10, 120)
    iv.clear(100, {s: 10, b: 10})
    with reverts_with("MarketReadingMissing"):  # right after clearing, no reading exists yet
        iv.settle([])
    forged = sign_reading(d, d.sellers[0], iv.k, 10, signer=d.operator)
    with reverts_with("MarketReadingBadSignature"):
        d.market.submitReading(forged, {"from": d.operator})
    tx = d.market.submitReading(sign_reading(d, d.sellers[0], iv.k, 10), {"from": d.sellers[0]})
    assert tx.events["ReadingSubmitted"]["exportedWh"] == 10
    with reverts_with("MarketReadingMissing"):  # the buyer's is still missing
        iv.settle([])
    seller_before = free_locked(d, d.sellers[0])[0]
    iv.settle([sign_reading(d, d.buyers[0], iv.k, 0, 10)])  # the operator omits the seller's
    assert free_locked(d, d.sellers[0])[0] - seller_before == 10 * RATE + 1_000  # no imbalance charge
