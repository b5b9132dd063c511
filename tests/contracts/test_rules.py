"""The clearing rule the contract enforces: one price per zone, in-the-money orders in full,
marginal ones in part, zones balanced by flows within link limits and prices."""

from __future__ import annotations

from brownie import chain
from conftest import BID, CLEAR_TIMEOUT, LINK_FEE, LINK_LIMIT, OFFER, Interval, fee_free, reverts_with, sign_reading


def test_every_fill_is_at_the_one_price(d):
    iv = Interval(d).open()
    s = iv.post(d.sellers[0], OFFER, 10, 90)
    b = iv.post(d.buyers[0], BID, 10, 120)
    iv.close()
    iv.commit_prices(100)
    with reverts_with("MarketFillNotAtZonePrice"):
        iv.commit([(s, 10, 90), (b, 10, 120)])  # each at its own limit: the spread attack
    with reverts_with("MarketPricesAlreadyCommitted"):
        iv.commit_prices(105)
    iv.commit(iv.fills({s: 10, b: 10}))


def test_fills_need_prices_first(d):
    iv = Interval(d).open()
    s = iv.post(d.sellers[0], OFFER, 10, 90)
    iv.close()
    with reverts_with("MarketPricesNotCommitted"):
        d.market.commitFills(iv.k, [(s, 0, 0)], True, {"from": d.operator})
    with reverts_with("MarketCopperNeedsOnePrice"):
        d.market.commitPrices(iv.k, [(0, 1), (1, 2)], [], {"from": d.operator})
    with reverts_with("MarketFlowsLengthMismatch"):
        d.market.commitPrices(iv.k, [(0, 1)], [3], {"from": d.operator})


def test_in_the_money_orders_fill_in_full_marginal_ones_in_part(d):
    iv = Interval(d).open()
    s_cheap = iv.post(d.sellers[0], OFFER, 10, 50)
    s_marg = iv.post(d.sellers[1], OFFER, 10, 100)
    s_dear = iv.post(d.sellers[2], OFFER, 10, 150)
    b_keen = iv.post(d.buyers[0], BID, 12, 200)
    b_marg = iv.post(d.buyers[1], BID, 10, 100)
    iv.close()
    iv.commit_prices(100)
    ok = {s_cheap: 10, s_marg: 4, b_keen: 12, b_marg: 2}
    for bad, error in (
        ({**ok, b_keen: 11, b_marg: 3}, "MarketFillBreaksPriceRule"),  # starving a keen bid
        ({**ok, s_cheap: 9, s_marg: 5}, "MarketFillBreaksPriceRule"),  # starving a cheap offer
        ({**ok, s_dear: 1, s_marg: 3}, "MarketFillBreaksPriceRule"),  # filling an offer above the price
        ({**ok, b_marg: 11, s_marg: 13}, "MarketFillExceedsOrder"),
    ):
        with reverts_with(error):
            d.market.commitFills(iv.k, iv.fills(bad), True, {"from": d.operator})
    with reverts_with("MarketZoneUnbalanced"):
        d.market.commitFills(iv.k, iv.fills({**ok, b_marg: 0}), True, {"from": d.operator})
    tx = iv.commit(iv.fills(ok))
    ev = tx.events["IntervalCleared"]
    assert (ev["boughtWh"], ev["soldWh"], ev["buyValue"], ev["sellValue"]) == (14, 14, 1_400, 1_400)


def test_attack_operator_prices_per_order_and_routes_energy_to_a_cheap_bid(d):
    """Sa offers 1 Wh at 190, Sb 1 at 10; B1 bids 1 at 100, B2 1 at 300. The operator once
    filled Sa at 190, Sb at 10, B1 at 0 and B2 at 300; now every fill is at one price, and at the
    price the engine finds (145) only B2 and Sb trade."""
    iv = Interval(d).open()
    sa = iv.post(d.sellers[0], OFFER, 1, 190)
    sb = iv.post(d.sellers[1], OFFER, 1, 10)
    b1 = iv.post(d.buyers[0], BID, 1, 100)
    b2 = iv.post(d.buyers[1], BID, 1, 300)
    iv.close()
    iv.commit_prices(145)
    attack = sorted([(sa, 1, 190), (sb, 1, 10), (b1, 1, 0), (b2, 1, 300)])
    with reverts_with("MarketFillNotAtZonePrice"):
        iv.commit(attack)
    with reverts_with("MarketFillBreaksPriceRule"):  # the 1 Wh to B1 instead of B2
        iv.commit(iv.fills({sb: 1, b1: 1}))
    with reverts_with("MarketFillBreaksPriceRule"):  # Sa (limit 190 > 145) cannot sell
        iv.commit(iv.fills({sa: 1, sb: 1, b1: 1, b2: 1}))
    iv.commit(iv.fills({sb: 1, b2: 1}))
    before = {a: d.market.accountOf(a)[0] for a in (d.sellers[1], d.buyers[0], d.buyers[1])}
    tx = iv.settle([sign_reading(d, d.sellers[1], iv.k, 1), sign_reading(d, d.buyers[1], iv.k, 0, 1)])
    assert tx.events["IntervalSettled"]["surplus"] == 0
    assert d.market.accountOf(d.sellers[1])[0] - before[d.sellers[1]] == 20 + 145  # collateral back + paid
    assert d.market.accountOf(d.buyers[1])[0] - before[d.buyers[1]] == 300 - 145  # escrow back - paid
    assert d.market.accountOf(d.buyers[0])[0] - before[d.buyers[0]] == 100  # B1 untouched, escrow back


def test_zones_trade_over_a_link_and_the_fee_recipient_gets_fees_plus_rent(dz):
    d = dz
    iv = Interval(d).open()
    s = iv.post(d.sellers[0], OFFER, 50, 90)  # zone 0
    b = iv.post(d.buyers[1], BID, 50, 200)  # zone 1
    iv.close()
    # Link 0 -> 1 is congested at 30 Wh: zone 0 clears at the marginal offer, zone 1 at the bid.
    with reverts_with("MarketFlowAboveLimit"):
        iv.commit_prices({0: 90, 1: 200}, [LINK_LIMIT + 1, 0])
    with reverts_with("MarketLinkPriceRule"):  # below the limit the difference must equal the fee
        iv.commit_prices({0: 90, 1: 200}, [LINK_LIMIT - 1, 0])
    with reverts_with("MarketLinkPriceRule"):  # with flow the difference must cover the fee
        iv.commit_prices({0: 90, 1: 92}, [LINK_LIMIT, 0])
    with reverts_with("MarketZonePriceMissing"):
        iv.commit_prices({0: 90}, [0, 0])
    with reverts_with("MarketZonesNotAscending"):
        d.market.commitPrices(iv.k, [(1, 200), (0, 90)], [LINK_LIMIT, 0], {"from": d.operator})
    tx = iv.commit_prices({0: 90, 1: 200}, [LINK_LIMIT, 0])
    rent = LINK_LIMIT * (200 - 90)
    assert tx.events["PricesCommitted"]["rent"] == rent == LINK_LIMIT * LINK_FEE + LINK_LIMIT * (200 - 90 - LINK_FEE)
    with reverts_with("MarketZoneUnbalanced"):
        iv.commit(iv.fills({s: 50, b: 50}))
    iv.commit(iv.fills({s: LINK_LIMIT, b: LINK_LIMIT}))
    fee_before = fee_free(d)
    iv.settle([sign_reading(d, d.sellers[0], iv.k, LINK_LIMIT), sign_reading(d, d.buyers[1], iv.k, 0, LINK_LIMIT)])
    assert fee_free(d) - fee_before == rent  # fees x flows + congestion rent, nothing else


def test_an_unused_link_forces_equal_prices_up_to_the_fee(dz):
    d = dz
    iv = Interval(d).open()
    iv.post(d.sellers[0], OFFER, 10, 90)  # zone 0
    iv.post(d.buyers[1], BID, 10, 200)  # zone 1
    iv.close()
    # Isolating the zones (no flow) with the gap the operator would pocket is refused.
    with reverts_with("MarketLinkPriceRule"):
        iv.commit_prices({0: 90, 1: 200}, [0, 0])


def test_fills_ascend_and_cover_every_live_order(d):
    iv = Interval(d).open()
    a = iv.post(d.sellers[0], OFFER, 10, 90)
    b = iv.post(d.buyers[0], BID, 10, 120)
    other = Interval(d).open()
    o = other.post(d.sellers[1], OFFER, 10, 90)
    iv.close()
    iv.commit_prices(100)
    with reverts_with("MarketFillsNotAscending"):
        iv.commit([(b, 10, 100), (a, 10, 100)])
    with reverts_with("MarketOrderNotInInterval"):
        iv.commit([(a, 10, 100), (o, 10, 100)])
    with reverts_with("MarketOrderNotFound"):
        iv.commit([(a + 1, 0, 100)])
    with reverts_with("MarketFillsIncomplete"):
        iv.commit([(a, 10, 100)])
    with reverts_with("MarketIntervalNotClosed"):
        other.commit_prices(100)


def test_a_chunk_boundary_never_splits_an_owners_fills(d):
    iv = Interval(d).open()
    a1 = iv.post(d.sellers[0], OFFER, 10, 90)
    a2 = iv.post(d.sellers[0], OFFER, 10, 90)
    b = iv.post(d.buyers[0], BID, 20, 120)
    iv.close()
    iv.commit_prices(100)
    iv.commit([(a1, 10, 100)], last=False)
    with reverts_with("MarketChunkSplitsOwner"):
        iv.commit([(a2, 10, 100), (b, 20, 100)])
    assert a1 < a2 < b


def test_interval_lifecycle_and_deadlines(d):
    iv = Interval(d)
    tx = d.market.openInterval(iv.k, {"from": d.operator})
    assert tx.events["IntervalOpened"]["imbalanceBuy"] == 15
    with reverts_with("MarketIntervalExists"):
        d.market.openInterval(iv.k, {"from": d.operator})
    iv.post(d.sellers[0], OFFER, 10, 90)
    iv.close()
    chain.sleep(CLEAR_TIMEOUT + 1)
    chain.mine()
    with reverts_with("MarketDeadlinePassed"):
        iv.commit_prices(100)
    late = Interval(d).open()
    chain.sleep(CLEAR_TIMEOUT + 1)
    chain.mine()
    with reverts_with("MarketDeadlinePassed"):
        late.close()


def test_clearing_slots_are_reused_once_free(d):
    base = 5_000_000
    held = Interval(d, base).open()
    held.clear(1, {})  # Cleared, not settled: holds clearing slot base % 16
    later = Interval(d, base + 16).open()
    later.close()
    with reverts_with("MarketClearingSlotBusy"):
        later.commit_prices(1)
    held.settle([])
    later.commit_prices(1)
    later.commit([])
    later.settle([])
