"""The transaction sender on a real node whose mining is held: a send whose receipt is late is
never sent again under another nonce, and a retry of the same call gets the first one's receipt."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.deploy import deploy_seeded_market
from app.devnet import Ganache
from gridswarm.chain import ChainError, ContractRevert, TxSender, connect


@pytest.fixture(scope="module")
def node() -> Iterator[Ganache]:
    with Ganache() as g:  # its own node: mining is stopped here, which others must not see
        yield g


def test_a_late_transaction_is_awaited_not_sent_twice(node: Ganache) -> None:
    w3 = connect(node.url)
    admin, operator, _coord, dep = deploy_seeded_market(w3, 4_242)
    token = dep.token_contract(w3)
    sender = TxSender(w3, admin, dep.decoder(), receipt_timeout_s=1.0)
    nonce = w3.eth.get_transaction_count(admin.address)
    call = token.functions.approve(operator.address, 7)

    w3.provider.make_request("miner_stop", [])
    try:
        with pytest.raises(ChainError):
            sender.transact(call)  # sent, but no receipt in time
        with pytest.raises(ChainError):
            sender.transact(call)  # still pending: waits again, sends nothing new
        # (Ganache's "pending" count leaves out its pool, so a naive resend would reuse the nonce.)
    finally:
        w3.provider.make_request("miner_start", [])

    receipt = sender.transact(call)  # the retry gets the first transaction's receipt
    assert receipt["status"] == 1
    assert w3.eth.get_transaction_count(admin.address) == nonce + 1  # exactly one transaction
    assert token.functions.allowance(admin.address, operator.address).call() == 7

    other = sender.transact(token.functions.approve(operator.address, 9))  # a new call goes out
    assert other["transactionHash"] != receipt["transactionHash"]
    assert w3.eth.get_transaction_count(admin.address) == nonce + 2


def test_a_prechecked_send_names_a_revert_and_sends_nothing(node: Ganache) -> None:
    """``precheck`` runs the call once instead of estimating it (the market loop's path inside
    the gate-to-delivery window): a revert is named and no transaction goes out."""
    w3 = connect(node.url)
    admin, operator, _coord, dep = deploy_seeded_market(w3, 4_243)
    market = dep.market_contract(w3)
    sender = TxSender(w3, admin, dep.decoder())
    nonce = w3.eth.get_transaction_count(admin.address)

    with pytest.raises(ContractRevert) as err:
        sender.transact(market.functions.openInterval(7), gas=1_000_000, precheck=True)  # admin is not the operator
    assert err.value.name == "MarketNotOperator"
    with pytest.raises(ValueError, match="gas limit"):
        sender.transact(market.functions.openInterval(7), precheck=True)
    assert w3.eth.get_transaction_count(admin.address) == nonce

    op = TxSender(w3, operator, dep.decoder())
    op_nonce = w3.eth.get_transaction_count(operator.address)
    with pytest.raises(ChainError):  # run at the gas it would be sent with: out of gas, not sent
        op.transact(market.functions.openInterval(7), gas=22_000, precheck=True, precheck_gas=22_000)
    assert w3.eth.get_transaction_count(operator.address) == op_nonce

    receipt = op.transact(market.functions.openInterval(7), gas=1_000_000, precheck=True)
    assert receipt["status"] == 1
    assert receipt["gasUsed"] < 1_000_000  # only what it used
