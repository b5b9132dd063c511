"""Settlement from signed meter readings: the rule, its worked example, and every check."""

from __future__ import annotations

from brownie import chain
from conftest import (
    BID,
    DEPOSIT,
    OFFER,
    SETTLE_TIMEOUT,
    Interval,
    free_locked,
    plain,
    readings_sorted,
    reverts_with,
    sign_reading,
)


def _cleared(d, rate=None):
    """One offer (seller 0: 10 Wh at 90) and one bid (buyer 0: 10 Wh at 120), filled at 100."""
    if rate is not None:
        d.market.setParameters(rate, 3600, 3600, d.fee, {"from": d.admin})
    iv = Interval(d).open()
    s = iv.post(d.sellers[0], OFFER, 10, 90)
    b = iv.post(d.buyers[0], BID, 10, 120)
    iv.close()
    fills = iv.fills({s: (10, 100), b: (10, 100)})
    iv.commit(fills)
    return iv, s, b, fills


def _settled_events(tx):
    ev = tx.events["FillsSettled"]
    return {
        int(oid): (int(delivered), int(amount), int(penalty))
        for oid, delivered, amount, penalty in zip(
            ev["orderIds"], ev["deliveredWh"], ev["amounts"], ev["penalties"], strict=True
        )
    }


def test_worked_example_from_the_natspec(d):
    """Rate 50, price 100: A offers 10 Wh and delivers 6; B bid 10 Wh at limit 120."""
    iv, s, b, fills = _cleared(d, rate=50)
    a_before, b_before = free_locked(d, d.sellers[0]), free_locked(d, d.buyers[0])
    assert a_before == (DEPOSIT - 500, 500) and b_before == (DEPOSIT - 1_200, 1_200)
    tx = iv.settle(fills, [sign_reading(d, d.sellers[0], iv.k, 6)])
    got = _settled_events(tx)
    assert got[s] == (6, 600, 200)  # delivered 6, received 600, forfeited 4 * 50
    assert got[b] == (6, 600, 200)  # received 6, paid 600, compensated 200
    assert free_locked(d, d.sellers[0]) == (DEPOSIT - 500 + 500 - 200 + 600, 0)  # +900 on the locked state
    assert free_locked(d, d.buyers[0]) == (DEPOSIT - 1_200 + 1_200 - 600 + 200, 0)  # +800
    ev = tx.events["IntervalSettled"]
    assert (ev["deliveredWh"], ev["shortfallWh"], ev["surplus"]) == (6, 4, 0)
    readings = tx.events["MeterReadingsAccepted"]
    assert plain(readings["participants"]) == (d.sellers[0].address,) and plain(readings["exportedWh"]) == (6,)


def test_full_delivery_pays_sellers_and_the_fee_recipient_gets_the_spread(d):
    iv = Interval(d).open()
    s = iv.post(d.sellers[0], OFFER, 100, 90)
    b = iv.post(d.buyers[0], BID, 100, 120)
    iv.close()
    fills = iv.fills({s: (100, 100), b: (100, 105)})  # 5 per Wh grid fee
    iv.commit(fills)
    tx = iv.settle(fills, [sign_reading(d, d.sellers[0], iv.k, 150)])  # export beyond the fill is capped
    got = _settled_events(tx)
    assert got[s] == (100, 10_000, 0) and got[b] == (100, 10_500, 0)
    assert tx.events["IntervalSettled"]["surplus"] == 500
    assert free_locked(d, d.fee) == (500, 0)
    assert free_locked(d, d.sellers[0]) == (DEPOSIT + 10_000, 0)
    assert free_locked(d, d.buyers[0]) == (DEPOSIT - 10_500, 0)
    assert d.market.intervalOf(iv.k)[0] == 4


def test_shortfall_is_shared_pro_rata_and_unmetered_sellers_forfeit_nothing(d):
    """Two sellers (one signs 30 of 60 Wh, one signs nothing), two buyers of 70 and 30 Wh."""
    iv = Interval(d).open()
    s1 = iv.post(d.sellers[0], OFFER, 60, 50)
    s2 = iv.post(d.sellers[1], OFFER, 40, 50)
    b1 = iv.post(d.buyers[0], BID, 70, 100)
    b2 = iv.post(d.buyers[1], BID, 30, 100)
    iv.close()
    fills = iv.fills({s1: (60, 80), s2: (40, 80), b1: (70, 80), b2: (30, 80)})
    iv.commit(fills)
    tx = iv.settle(fills, [sign_reading(d, d.sellers[0], iv.k, 30)])
    got = _settled_events(tx)
    assert got[s1] == (30, 2_400, 30 * 20)
    assert got[s2] == (0, 0, 0)
    # D = 30 split 70:30 -> 21 and 9; the forfeited 600 split by missing energy 49:21
    assert got[b1] == (21, 21 * 80, 420) and got[b2] == (9, 9 * 80, 180)
    ev = tx.events["IntervalSettled"]
    assert (ev["deliveredWh"], ev["shortfallWh"], ev["surplus"]) == (30, 70, 0)
    for p in (*d.sellers[:2], *d.buyers[:2]):
        assert free_locked(d, p)[1] == 0


def test_one_export_covers_a_sellers_offers_in_fill_order(d):
    iv = Interval(d).open()
    o1 = iv.post(d.sellers[2], OFFER, 50, 10)
    o2 = iv.post(d.sellers[2], OFFER, 50, 10)
    b = iv.post(d.buyers[2], BID, 100, 10)
    iv.close()
    fills = iv.fills({o1: (50, 10), o2: (50, 10), b: (100, 10)})
    iv.commit(fills)
    got = _settled_events(iv.settle(fills, [sign_reading(d, d.sellers[2], iv.k, 70)]))
    assert got[o1][0] == 50 and got[o2][0] == 20 and got[b][0] == 70


def test_settling_twice_is_impossible(d):
    iv, s, b, fills = _cleared(d)
    iv.settle(fills, [])
    with reverts_with("MarketIntervalAlreadySettled"):
        iv.settle(fills, [])


def test_settle_needs_a_cleared_interval_before_its_deadline(d):
    iv = Interval(d).open()
    with reverts_with("MarketIntervalNotCleared"):
        iv.settle([], [])
    iv2, s, b, fills = _cleared(d)
    chain.sleep(SETTLE_TIMEOUT + 1)
    chain.mine()
    with reverts_with("MarketDeadlinePassed"):
        iv2.settle(fills, [])


def test_fills_must_be_the_committed_ones(d):
    iv, s, b, fills = _cleared(d)
    with reverts_with("MarketFillsMismatch"):
        iv.settle([(s, 10, 100), (b, 10, 99)], [])
    with reverts_with("MarketFillsMismatch"):
        iv.settle(fills[:1], [])
    bad_lock = [(oid, q, p, lock + 1) for oid, q, p, lock in iv.settlement(fills)]
    with reverts_with("MarketFillsMismatch"):
        d.market.settle(iv.k, bad_lock, [], {"from": d.operator})


def test_readings_must_be_signed_by_their_participant_for_this_interval(d):
    iv, s, b, fills = _cleared(d)
    with reverts_with("MarketReadingBadSignature"):
        iv.settle(fills, [sign_reading(d, d.sellers[0], iv.k, 10, signer=d.operator)])
    with reverts_with("MarketReadingWrongInterval"):
        iv.settle(fills, [sign_reading(d, d.sellers[0], iv.k + 1, 10)])
    tampered = sign_reading(d, d.sellers[0], iv.k, 1)
    tampered = ((tampered[0][0], iv.k, 10, 0), tampered[1], tampered[2])
    with reverts_with("MarketReadingBadSignature"):
        iv.settle(fills, [tampered])


def test_readings_come_one_per_participant_in_ascending_order(d):
    iv, s, b, fills = _cleared(d)
    two = readings_sorted([sign_reading(d, d.sellers[0], iv.k, 10), sign_reading(d, d.sellers[1], iv.k, 10)])
    with reverts_with("MarketReadingsNotAscending"):
        iv.settle(fills, two[::-1])
    with reverts_with("MarketReadingsNotAscending"):
        iv.settle(fills, [two[0], two[0]])
    iv.settle(fills, two)  # a reading nobody's offer uses is accepted and ignored


def test_only_the_operator_settles(d):
    iv, s, b, fills = _cleared(d)
    with reverts_with("AccessControlUnauthorizedAccount"):
        d.market.settle(iv.k, iv.settlement(fills), [], {"from": d.admin})


def test_meter_reading_digest_matches_the_off_chain_signature(d):
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    from gridswarm.chain import meter_typed_data

    data = meter_typed_data(chain.id, d.market.address, d.sellers[0].address, 7, 8, 9)
    digest = d.market.meterReadingDigest((d.sellers[0].address, 7, 8, 9))
    signed = Account.sign_message(encode_typed_data(full_message=data), d.sellers[0].private_key)
    assert Account._recover_hash(bytes(digest), signature=signed.signature) == d.sellers[0].address
