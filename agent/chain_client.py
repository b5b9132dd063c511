"""The agent's view of the chain: its own orders, from its own account (docs/architecture.md §3, step 1)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from gridswarm.chain import ChainError, ChainUnavailable, Deployment, TxSender, connect, interval_lapsed

logger = logging.getLogger(__name__)

SIDES = {"bid": 0, "offer": 1}


class WrongMarket(ChainError):
    """The deployment's market address holds no contract on this chain."""


@dataclass(frozen=True)
class PostedOrder:
    order_id: int
    side: str
    qty_wh: int
    price: int
    tx: str
    gas: int


class AgentChain:
    def __init__(self, rpc_url: str, deployment: Path, account: LocalAccount) -> None:
        self.rpc_url = rpc_url
        self.deployment = Deployment.load(deployment)
        self.account = account
        self._w3: Web3 | None = None
        self._sender: TxSender | None = None

    @property
    def w3(self) -> Web3:
        if self._w3 is None:
            w3 = connect(self.rpc_url)
            if int(w3.eth.chain_id) != self.deployment.chain_id:
                raise ChainUnavailable(f"{self.rpc_url} is not chain {self.deployment.chain_id}")
            self._w3 = w3
            self._sender = TxSender(w3, self.account, self.deployment.decoder())
        return self._w3

    @property
    def market(self) -> Any:
        return self.deployment.market_contract(self.w3)

    @property
    def sender(self) -> TxSender:
        _ = self.w3
        assert self._sender is not None
        return self._sender

    def coordinator_key(self) -> bytes:
        if not self.w3.eth.get_code(self.deployment.market):
            raise WrongMarket(
                f"no contract code at the market address {self.deployment.market} on {self.rpc_url}: the deployment "
                "file is for another chain or the chain was reset (fix `deployment` in the site config)"
            )
        return bytes(self.market.functions.coordinatorKey().call())

    def find_order(self, interval: int) -> PostedOrder | None:
        """This account's order in ``interval`` if one was posted (read from events)."""
        try:
            logs = self.market.events.OrderPosted.get_logs(
                argument_filters={"interval": interval, "owner": self.account.address},
                from_block=self.deployment.block,
            )
        except ChainError:
            raise
        except Exception as exc:  # noqa: BLE001 - named like every other chain failure
            raise self.deployment.decoder().map(exc) from exc
        if not logs:
            return None
        a = logs[-1]["args"]
        return PostedOrder(
            a["orderId"], "offer" if a["side"] == 1 else "bid", a["qty"], a["price"],
            "0x" + bytes(logs[-1]["transactionHash"]).hex(), 0,
        )

    def post_order(self, interval: int, side: str, qty_wh: int, price: int) -> PostedOrder:
        receipt = self.sender.transact(self.market.functions.postOrder(interval, SIDES[side], qty_wh, price))
        ev = self.market.events.OrderPosted().process_receipt(receipt)[0]["args"]
        return PostedOrder(
            ev["orderId"], side, qty_wh, price, "0x" + bytes(receipt["transactionHash"]).hex(), int(receipt["gasUsed"])
        )

    def order_state(self, order_id: int, interval: int) -> tuple[bool, bool]:
        """(live, lapsed): whether the order still holds a lock, and whether its interval
        missed the operator's deadline (then :meth:`recover` releases the lock)."""
        live = bool(self.market.functions.orderOf(order_id).call()[5])
        lapsed = interval_lapsed(self.w3, self.market, interval) if live else False
        return live, lapsed

    def recover(self, order_ids: list[int]) -> Any:
        """Release this account's locks in orders of lapsed intervals (the contract checks
        ownership and the lapse)."""
        return self.sender.transact(self.market.functions.recover(order_ids))

    def balance(self) -> tuple[int, int]:
        free, locked, *_ = self.market.functions.accountOf(self.account.address).call()
        return int(free), int(locked)
