"""Roles, participants (register, re-zone, rotate, remove, return), keys, parameters, pause."""

from __future__ import annotations

from brownie import ZERO_ADDRESS
from conftest import BID, Interval, free_locked, key, params, plain, reverts_with


def test_register_records_key_zone_and_allocates_order_slots(d):
    who = d.outsider
    tx = d.market.registerParticipant(who, key(99), 7, {"from": d.admin})
    ev = tx.events["ParticipantRegistered"]
    assert (ev["account"], ev["ed25519Key"], ev["zone"]) == (who, "0x" + key(99).hex(), 7)
    assert plain(d.market.accountOf(who)) == (0, 0, 7, True, "0x" + key(99).hex(), 0)
    # order slots are written once here, so the first order rewrites a used slot
    assert tx.gas_used > 16 * 20_000


def test_only_admin_registers(d):
    with reverts_with("MarketNotAdmin"):
        d.market.registerParticipant(d.outsider, key(1), 0, {"from": d.operator})


def test_register_rejects_zero_address_zero_key_and_duplicates(d):
    with reverts_with("MarketZeroAddress"):
        d.market.registerParticipant(ZERO_ADDRESS, key(1), 0, {"from": d.admin})
    with reverts_with("MarketInvalidKey"):
        d.market.registerParticipant(d.outsider, b"\x00" * 32, 0, {"from": d.admin})
    with reverts_with("MarketParticipantExists"):
        d.market.registerParticipant(d.sellers[0], key(1), 0, {"from": d.admin})


def test_participant_rotates_own_key(d):
    p = d.sellers[0]
    tx = d.market.rotateKey(key(77), {"from": p})
    assert tx.events["ParticipantKeyRotated"]["ed25519Key"] == "0x" + key(77).hex()
    assert d.market.accountOf(p)[4] == "0x" + key(77).hex()
    with reverts_with("MarketInvalidKey"):
        d.market.rotateKey(b"\x00" * 32, {"from": p})
    with reverts_with("MarketNotParticipant"):
        d.market.rotateKey(key(78), {"from": d.outsider})


def test_zone_change_applies_to_later_orders_only(d):
    p = d.buyers[0]
    iv = Interval(d).open()
    before = iv.post(p, BID, 100, 50)
    tx = d.market.setZone(p, 9, {"from": d.admin})
    assert tx.events["ParticipantZoneChanged"]["zone"] == 9
    after = d.market.postOrder(iv.k, BID, 100, 50, {"from": p})
    assert after.events["OrderPosted"]["zone"] == 9
    assert d.market.orderOf(before)[0] == p  # the earlier order is untouched
    with reverts_with("MarketNotParticipant"):
        d.market.setZone(d.outsider, 1, {"from": d.admin})
    with reverts_with("MarketNotAdmin"):
        d.market.setZone(p, 1, {"from": p})


def test_removal_blocks_new_business_but_never_funds(d):
    p = d.buyers[1]
    iv = Interval(d).open()
    oid = iv.post(p, BID, 100, 50)
    tx = d.market.removeParticipant(p, {"from": d.admin})
    assert "ParticipantRemoved" in tx.events
    assert d.market.accountOf(p)[3] is False
    with reverts_with("MarketNotParticipant"):
        d.market.postOrder(iv.k, BID, 1, 1, {"from": p})
    with reverts_with("MarketNotParticipant"):
        d.market.deposit(1, {"from": p})
    with reverts_with("MarketNotParticipant"):
        d.market.removeParticipant(p, {"from": d.admin})
    # its order still cancels and its money still leaves
    d.market.cancelOrder(oid, {"from": p})
    free, locked = free_locked(d, p)
    assert locked == 0
    d.market.withdraw(free, {"from": p})
    assert free_locked(d, p) == (0, 0)


def test_removed_participant_returns_with_balance_and_order_counter(d):
    p = d.sellers[1]
    iv = Interval(d).open()
    first = iv.post(p, BID, 10, 10)
    free_before, locked_before = free_locked(d, p)
    d.market.removeParticipant(p, {"from": d.admin})
    d.market.registerParticipant(p, key(55), 3, {"from": d.admin})
    assert free_locked(d, p) == (free_before, locked_before)
    second = iv.post(p, BID, 10, 10)
    assert second != first and d.market.accountOf(p)[5] == 2


def test_coordinator_key_is_published_and_rotated_by_admin(d):
    tx = d.market.setCoordinatorKey(key(5), {"from": d.admin})
    assert tx.events["CoordinatorKeySet"]["ed25519Key"] == "0x" + key(5).hex()
    d.market.setCoordinatorKey(key(6), {"from": d.admin})
    assert d.market.coordinatorKey() == "0x" + key(6).hex()
    with reverts_with("MarketInvalidKey"):
        d.market.setCoordinatorKey(b"\x00" * 32, {"from": d.admin})
    with reverts_with("MarketNotAdmin"):
        d.market.setCoordinatorKey(key(7), {"from": d.operator})


def test_pause_stops_only_new_orders(d):
    iv = Interval(d).open()
    oid = iv.post(d.buyers[0], BID, 100, 50)
    tx = d.market.setPaused(True, {"from": d.admin})
    assert tx.events["PausedSet"]["paused"] is True
    assert d.market.parameters()[1] is True
    with reverts_with("MarketPaused"):
        d.market.postOrder(iv.k, BID, 1, 1, {"from": d.buyers[1]})
    d.market.deposit(5, {"from": d.buyers[0]})
    d.market.withdraw(5, {"from": d.buyers[0]})
    d.market.cancelOrder(oid, {"from": d.buyers[0]})
    d.market.setPaused(False, {"from": d.admin})
    iv.post(d.buyers[1], BID, 1, 1)
    with reverts_with("MarketNotAdmin"):
        d.market.setPaused(True, {"from": d.operator})


def test_operator_cannot_register_or_change_parameters(d):
    with reverts_with("MarketNotAdmin"):
        d.market.scheduleParameters(params(d.operator, d.fee), {"from": d.operator})
    with reverts_with("MarketNotAdmin"):
        d.market.removeParticipant(d.sellers[0], {"from": d.operator})
