"""Powers: parameter, link and operator changes wait a visible delay; admin transfers use
OpenZeppelin's delayed admin rules; the admin is never the operator; the fee recipient is never
the market or zero."""

from __future__ import annotations

from brownie import ZERO_ADDRESS, chain
from conftest import (
    BID,
    CHANGE_DELAY,
    CLEAR_TIMEOUT,
    OFFER,
    RATE,
    SETTLE_TIMEOUT,
    Interval,
    params,
    plain,
    reverts_with,
    sign_reading,
)


def test_parameter_changes_wait_the_announced_delay(d):
    new = params(d.operator, d.outsider, rate=40, imb_buy=30, imb_sell=10)
    tx = d.market.scheduleParameters(new, {"from": d.admin})
    at = tx.events["ParametersScheduled"]["effectiveAt"]
    assert at == tx.timestamp + CHANGE_DELAY
    with reverts_with("MarketChangeNotDue"):
        d.market.applyScheduled({"from": d.outsider})
    iv = Interval(d).open()  # opened before the change: keeps the old prices
    chain.sleep(CHANGE_DELAY + 1)
    tx = d.market.applyScheduled({"from": d.outsider})
    assert tx.events["ParametersSet"]["feeRecipient"] == d.outsider
    assert plain(d.market.parameters()[0])[:3] == (40, 30, 10)
    assert d.market.intervalOf(iv.k)[5] == RATE
    with reverts_with("MarketNoChangeScheduled"):
        d.market.applyScheduled({"from": d.outsider})


def test_attack_fee_recipient_repointed_after_commit_needs_the_delay(d):
    iv = Interval(d).open()
    s = iv.post(d.sellers[0], OFFER, 10, 90)
    b = iv.post(d.buyers[0], BID, 10, 120)
    iv.clear(100, {s: 10, b: 10})
    d.market.scheduleParameters(params(d.operator, d.outsider), {"from": d.admin})
    with reverts_with("MarketChangeNotDue"):
        d.market.applyScheduled({"from": d.admin})
    d.market.cancelScheduled({"from": d.admin})
    with reverts_with("MarketNoChangeScheduled"):
        d.market.cancelScheduled({"from": d.admin})
    iv.settle([sign_reading(d, d.sellers[0], iv.k, 10), sign_reading(d, d.buyers[0], iv.k, 0, 10)])


def test_parameters_are_checked(d):
    for bad, error in (
        (params(d.operator, ZERO_ADDRESS), "MarketFeeRecipientInvalid"),
        (params(d.operator, d.market.address), "MarketFeeRecipientInvalid"),
        (params(d.admin, d.fee), "MarketOperatorIsAdmin"),
        (params(ZERO_ADDRESS, d.fee), "MarketZeroAddress"),
        (params(d.operator, d.fee, imb_buy=RATE + 1), "MarketImbalanceBuyAboveCollateral"),
        (params(d.operator, d.fee, imb_buy=5, imb_sell=6), "MarketImbalanceSellAboveBuy"),
        ((RATE, 1, 1, 0, SETTLE_TIMEOUT, str(d.fee), str(d.operator)), "MarketTimeoutOutOfRange"),
        ((RATE, 1, 1, CLEAR_TIMEOUT, 8 * 86_400, str(d.fee), str(d.operator)), "MarketTimeoutOutOfRange"),
    ):
        with reverts_with(error):
            d.market.scheduleParameters(bad, {"from": d.admin})


def test_attack_admin_cannot_make_itself_operator(d):
    with reverts_with("MarketOperatorIsAdmin"):
        d.market.scheduleParameters(params(d.admin, d.fee), {"from": d.admin})
    with reverts_with("MarketNotOperator"):
        d.market.openInterval(5, {"from": d.admin})
    with reverts_with("MarketOperatorIsAdmin"):  # nor hand the admin role to the operator
        d.market.beginAdminTransfer(d.operator, {"from": d.admin})


def test_admin_transfer_waits_the_delay(d):
    with reverts_with("MarketNotAdmin"):
        d.market.beginAdminTransfer(d.outsider, {"from": d.outsider})
    tx = d.market.beginAdminTransfer(d.outsider, {"from": d.admin})
    assert tx.events["AdminTransferScheduled"]["effectiveAt"] == tx.timestamp + CHANGE_DELAY
    with reverts_with("MarketChangeNotDue"):
        d.market.acceptAdminTransfer({"from": d.outsider})
    with reverts_with("MarketNotAdmin"):
        d.market.acceptAdminTransfer({"from": d.operator})
    chain.sleep(CHANGE_DELAY + 1)
    chain.mine()
    d.market.acceptAdminTransfer({"from": d.outsider})
    assert d.market.admin()[0] == d.outsider
    with reverts_with("MarketNotAdmin"):
        d.market.setPaused(True, {"from": d.admin})


def test_operator_changes_wait_the_delay(d):
    d.market.scheduleParameters(params(d.outsider, d.fee), {"from": d.admin})
    d.market.openInterval(11, {"from": d.operator})
    chain.sleep(CHANGE_DELAY + 1)
    d.market.applyScheduled({"from": d.operator})
    with reverts_with("MarketNotOperator"):
        d.market.openInterval(12, {"from": d.operator})
    d.market.openInterval(12, {"from": d.outsider})


def test_link_changes_wait_the_delay(dz):
    d = dz
    assert plain(d.market.links()) == ((0, 1, 5, 30), (1, 0, 5, 30))
    with reverts_with("MarketInvalidLink"):
        d.market.scheduleLinks([(0, 0, 1, 1)], {"from": d.admin})
    with reverts_with("MarketInvalidLink"):
        d.market.scheduleLinks([(0, 1, 1, 1), (0, 1, 2, 2)], {"from": d.admin})
    with reverts_with("MarketTooManyLinks"):
        d.market.scheduleLinks([(i, i + 1, 1, 1) for i in range(65)], {"from": d.admin})
    d.market.scheduleLinks([(0, 1, 9, 100)], {"from": d.admin})
    with reverts_with("MarketChangeNotDue"):
        d.market.applyScheduled({"from": d.outsider})
    chain.sleep(CHANGE_DELAY + 1)
    tx = d.market.applyScheduled({"from": d.outsider})
    assert "LinksSet" in tx.events
    assert plain(d.market.links()) == ((0, 1, 9, 100),)
