"""Intervals and fills: open, close, commit in chunks, the checks at commit and finalisation."""

from __future__ import annotations

from brownie import chain
from conftest import BID, CLEAR_TIMEOUT, OFFER, Interval, plain, reverts_with


def _book(d):
    iv = Interval(d).open()
    s = iv.post(d.sellers[0], OFFER, 500, 90)
    b = iv.post(d.buyers[0], BID, 400, 120)
    return iv, s, b


def test_interval_lifecycle_events(d):
    iv = Interval(d)
    tx = d.market.openInterval(iv.k, {"from": d.operator})
    assert tx.events["IntervalOpened"]["collateralRate"] == 20
    assert d.market.intervalOf(iv.k)[0] == 1
    with reverts_with("MarketIntervalExists"):
        d.market.openInterval(iv.k, {"from": d.operator})
    iv.post(d.buyers[0], BID, 1, 1)
    tx = iv.close()
    assert tx.events["IntervalClosed"]["liveOrders"] == 1
    with reverts_with("MarketIntervalNotOpen"):
        iv.close()


def test_commit_in_chunks_then_finalise(d):
    iv, s, b = _book(d)
    iv.close()
    fills = iv.fills({s: (400, 100), b: (400, 110)})
    tx1 = iv.commit(fills[:1], last=False)
    assert plain(tx1.events["FillsCommitted"]["fills"]) == (fills[0],)
    assert d.market.intervalOf(iv.k)[2] == 1
    tx2 = iv.commit(fills[1:], last=True)
    ev = tx2.events["IntervalCleared"]
    assert (ev["fills"], ev["boughtWh"], ev["soldWh"], ev["buyValue"], ev["sellValue"]) == (2, 400, 400, 44_000, 40_000)
    assert plain(d.market.totalsOf(iv.k))[:4] == (400, 400, 44_000, 40_000)
    assert d.market.totalsOf(iv.k)[4] == ev["fillsHash"]
    assert d.market.intervalOf(iv.k)[0] == 3


def test_commit_needs_a_closed_interval_before_its_deadline(d):
    iv, s, b = _book(d)
    with reverts_with("MarketIntervalNotClosed"):
        iv.commit(iv.fills({}))
    iv.close()
    chain.sleep(CLEAR_TIMEOUT + 1)
    chain.mine()
    with reverts_with("MarketDeadlinePassed"):
        iv.commit(iv.fills({}))


def test_close_after_the_deadline_is_refused(d):
    iv, _, _ = _book(d)
    chain.sleep(CLEAR_TIMEOUT + 1)
    chain.mine()
    with reverts_with("MarketDeadlinePassed"):
        iv.close()


def test_fill_checks(d):
    iv, s, b = _book(d)
    other, _, _ = _book(d)
    iv.close()
    with reverts_with("MarketOrderNotInInterval"):
        iv.commit([(sorted(other.orders)[0], 0, 0)], last=False)
    with reverts_with("MarketOrderNotFound"):
        iv.commit([(iv.k << 192 | 12345, 0, 0)], last=False)
    with reverts_with("MarketFillExceedsOrder"):
        iv.commit([(s, 501, 100)], last=False)
    with reverts_with("MarketFillPriceOutsideLimit"):
        iv.commit([(s, 100, 89)], last=False)  # below the offer's limit
    with reverts_with("MarketFillPriceOutsideLimit"):
        iv.commit([(s, 100, 100), (b, 100, 121)], last=False)  # above the bid's limit
    with reverts_with("MarketFillsNotAscending"):
        iv.commit([(b, 0, 0), (s, 0, 0)], last=False)
    iv.commit([(s, 0, 0)], last=False)
    with reverts_with("MarketFillsNotAscending"):  # no order is filled twice, even across chunks
        iv.commit([(s, 0, 0)], last=False)


def test_finalisation_checks(d):
    iv, s, b = _book(d)
    iv.close()
    with reverts_with("MarketFillsIncomplete"):
        iv.commit([(s, 0, 0)])
    with reverts_with("MarketFillsUnbalanced"):
        iv.commit([(s, 300, 100), (b, 200, 100)])
    with reverts_with("MarketFillsValueDeficit"):
        iv.commit([(s, 200, 110), (b, 200, 100)])
    iv.commit([(s, 200, 100), (b, 200, 100)])


def test_empty_interval_clears_and_settles(d):
    iv = Interval(d).open()
    iv.close()
    iv.commit([])
    tx = iv.settle([], [])
    assert tx.events["IntervalSettled"]["deliveredWh"] == 0


def test_clearing_slots_are_reused_once_free(d):
    slots = d.market.CLEARING_SLOTS()
    base = 5_000_000
    held = Interval(d, base).open()
    held.close()
    held.commit([])  # Cleared, not settled: holds clearing slot base % 16
    later = Interval(d, base + slots).open()
    later.close()
    with reverts_with("MarketClearingSlotBusy"):
        later.commit([])
    held.settle([], [])
    later.commit([])
    assert d.market.intervalOf(later.k)[0] == 3
