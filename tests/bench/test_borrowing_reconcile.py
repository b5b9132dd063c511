"""The borrowing scenario's reconciliation (bench/scenarios.py): grants against the chain's fills,
their settled deliveries and the lenders' meter readings, to the Wh. It must fail whenever the
energy granted or moved and the trades differ."""

import copy

import pytest

from bench.scenarios import reconcile_borrowing

L = 7200.0
A, B, C = "0xaaa", "0xbbb", "0xccc"  # A and C lend, B borrows
GRANTS = [{"lender": A, "borrower": B, "energy_wh": 700, "start": 3 * L, "end": 4 * L},
          {"lender": C, "borrower": B, "energy_wh": 300, "start": 3 * L, "end": 4 * L},
          {"lender": A, "borrower": B, "energy_wh": 500, "start": 9 * L, "end": 10 * L}]  # after the run
TRADES = [{"interval": 3, "owner": A, "side": "offer", "qty_wh": 700, "delivered_wh": 700},
          {"interval": 3, "owner": C, "side": "offer", "qty_wh": 300, "delivered_wh": 300},
          {"interval": 3, "owner": B, "side": "bid", "qty_wh": 1000, "delivered_wh": 1000}]
READINGS = {(3, A): (712, 0), (3, C): (300, 0), (3, B): (0, 2400)}


def check(grants=GRANTS, trades=TRADES, readings=READINGS):
    return reconcile_borrowing(grants, trades, readings, L, settled={3})


def test_grants_trades_and_meters_that_agree_reconcile():
    r = check()
    assert r["ok"] and not r["mismatches"]
    assert r["granted_wh"] == r["offer_filled_wh"] == r["bid_filled_wh"] == r["settled_delivered_wh"] == 1000
    assert r["lenders_metered_export_wh"] == 1012 and r["granted_wh_in_intervals_not_settled"] == 500


def _off_by_one_fill():
    t = copy.deepcopy(TRADES)
    t[0]["qty_wh"] = 699
    t[0]["delivered_wh"] = 699
    return {"trades": t}


def _short_settlement():
    t = copy.deepcopy(TRADES)
    t[2]["delivered_wh"] = 999
    return {"trades": t}


def _extra_fill():
    return {"trades": [*TRADES, {"interval": 3, "owner": C, "side": "bid", "qty_wh": 5, "delivered_wh": 5}]}


def _meter_short():
    return {"readings": {**READINGS, (3, C): (299, 0)}}


def _grant_never_traded():
    return {"grants": [*GRANTS, {"lender": C, "borrower": B, "energy_wh": 40, "start": 3 * L, "end": 4 * L}]}


@pytest.mark.parametrize("change, says", [
    (_off_by_one_fill, "granted 700 Wh, offer filled 699 Wh"),
    (_short_settlement, "settled 999 Wh of 1000 Wh"),
    (_extra_fill, "without a grant"),
    (_meter_short, "metered 299 Wh export for a 300 Wh fill"),
    (_grant_never_traded, "granted 340 Wh, offer filled 300 Wh"),
])
def test_any_difference_between_energy_and_trades_fails(change, says):
    r = check(**change())
    assert not r["ok"]
    assert any(says in m for m in r["mismatches"]), r["mismatches"]
