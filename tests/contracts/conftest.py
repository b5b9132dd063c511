"""brownie fixtures for the market contracts: one deployment per module, isolated per test.

Run with ``scripts/test_contracts.sh`` (Ganache on a free port, brownie network
``gridswarm-ganache``). Accounts come from Ganache's mnemonic, so their keys are known and
participants can sign EIP-712 meter readings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from brownie import EnergyMarket, GridToken, MarketClearing, MarketSettlement, accounts, chain, network
from brownie.test.managers.runner import RevertContextManager
from eth_account import Account
from eth_account.messages import encode_typed_data

from gridswarm.chain import compact_signature, meter_typed_data

MNEMONIC = "myth like bonus scare over problem client lizard pioneer submit female collect"
RATE = 20  # collateral per offered Wh
CLEAR_TIMEOUT = 3600
SETTLE_TIMEOUT = 3600
TOKEN = 10**6
DEPOSIT = 1_000 * TOKEN
BID, OFFER = 0, 1
NO_GAS_PRICE_ZERO = "2 gwei"  # Ganache post-London never mines gas price 0


def reverts_with(error: str) -> Any:
    """``brownie.reverts`` for the custom error ``error`` (any arguments)."""
    return RevertContextManager(revert_pattern=rf"{re.escape(error)}(:.*)?")


@pytest.fixture(scope="session", autouse=True)
def _gas_price() -> None:
    network.gas_price(NO_GAS_PRICE_ZERO)


@pytest.fixture(scope="session")
def keyed() -> list[Any]:
    """Ganache's accounts as brownie local accounts (they hold their private keys)."""
    return accounts.from_mnemonic(MNEMONIC, count=12)


@dataclass
class Deployed:
    token: Any
    market: Any
    admin: Any
    operator: Any
    sellers: list[Any]
    buyers: list[Any]
    outsider: Any
    fee: Any

    @property
    def participants(self) -> list[Any]:
        return [*self.sellers, *self.buyers]


IMB_BUY = 15  # imbalance buy price: what a short seller pays per Wh (<= RATE)
IMB_SELL = 5  # imbalance sell price: what a buyer is paid per unused Wh (<= IMB_BUY)
CHANGE_DELAY = 86_400
LINK_FEE, LINK_LIMIT = 5, 30


def params(operator: Any, fee: Any, rate: int = RATE, imb_buy: int = IMB_BUY, imb_sell: int = IMB_SELL) -> tuple:
    """An IEnergyMarket.Params tuple."""
    return (rate, imb_buy, imb_sell, CLEAR_TIMEOUT, SETTLE_TIMEOUT, str(fee), str(operator))


def _deploy(keyed: list[Any], links: list[tuple[int, int, int, int]]) -> Deployed:
    admin, operator, fee, outsider = keyed[0], keyed[1], keyed[10], keyed[11]
    sellers, buyers = keyed[2:6], keyed[6:10]
    token = GridToken.deploy(admin, {"from": admin})
    # The market's external libraries; brownie links the market to the latest deployments.
    MarketSettlement.deploy({"from": admin})
    MarketClearing.deploy({"from": admin})
    market = EnergyMarket.deploy(token, admin, params(operator, fee), links, CHANGE_DELAY, {"from": admin})
    for i, p in enumerate([*sellers, *buyers]):
        market.registerParticipant(p, key(i + 1), i % 2, {"from": admin})
        token.mint(p, 10 * DEPOSIT, {"from": admin})
        token.approve(market, 2**256 - 1, {"from": p})
        market.deposit(DEPOSIT, {"from": p})
    for who in (outsider, fee):
        token.mint(who, DEPOSIT, {"from": admin})
        token.approve(market, 2**256 - 1, {"from": who})
    return Deployed(token, market, admin, operator, sellers, buyers, outsider, fee)


@pytest.fixture(scope="module")
def d(keyed: list[Any]) -> Deployed:
    """A market without links: one price for every order (sellers 0, 2 and buyers 1, 3 sit in
    zone 0, the others in zone 1, which a copper-plate market ignores)."""
    return _deploy(keyed, [])


@pytest.fixture(scope="module")
def dz(keyed: list[Any]) -> Deployed:
    """A market with zones 0 and 1 linked both ways (fee 5, limit 30 Wh per interval)."""
    return _deploy(keyed, [(0, 1, LINK_FEE, LINK_LIMIT), (1, 0, LINK_FEE, LINK_LIMIT)])


@pytest.fixture(autouse=True)
def isolation(fn_isolation: Any) -> None:
    """Every test starts from the module's deployment."""


def key(i: int) -> bytes:
    """A distinct, non-zero Ed25519 public key stand-in."""
    return (0x1000 + i).to_bytes(32, "big")


class Interval:
    """One interval driven through the market, with the bookkeeping the tests need."""

    _next = 1_980_000

    def __init__(self, d: Deployed, k: int | None = None) -> None:
        self.d = d
        if k is None:
            k = Interval._next
            Interval._next += 1
        self.k = k
        self.orders: dict[int, dict[str, Any]] = {}
        self.chunks: list[list[tuple[int, int, int]]] = []

    def open(self) -> Interval:
        self.d.market.openInterval(self.k, {"from": self.d.operator})
        return self

    def post(self, who: Any, side: int, qty: int, price: int) -> int:
        tx = self.d.market.postOrder(self.k, side, qty, price, {"from": who})
        ev = tx.events["OrderPosted"]
        oid = int(ev["orderId"])
        self.orders[oid] = {
            "owner": who, "side": side, "qty": qty, "price": price, "lock": int(ev["locked"]), "zone": int(ev["zone"])
        }
        return oid

    def close(self) -> Any:
        return self.d.market.closeInterval(self.k, {"from": self.d.operator})

    def commit_prices(self, prices: int | dict[int, int], flows: list[int] | None = None) -> Any:
        """`prices`: one price (no links) or {zone: price}; `flows` per registered link."""
        zp = [(0, prices)] if isinstance(prices, int) else sorted(prices.items())
        tx = self.d.market.commitPrices(self.k, zp, flows or [], {"from": self.d.operator})
        self.prices = prices
        return tx

    def price_of(self, oid: int) -> int:
        if isinstance(self.prices, int):
            return self.prices
        return self.prices[self.orders[oid]["zone"]]

    def fills(self, matched: dict[int, int]) -> list[tuple[int, int, int]]:
        """One fill per live order in ascending id at its zone price; `matched` gives qty per id."""
        return [(oid, matched.get(oid, 0), self.price_of(oid)) for oid in sorted(self.orders)]

    def commit(self, fills: list[tuple[int, int, int]], last: bool = True) -> Any:
        tx = self.d.market.commitFills(self.k, fills, last, {"from": self.d.operator})
        self.chunks.append(list(fills))
        return tx

    def clear(self, prices: int | dict[int, int], matched: dict[int, int], flows: list[int] | None = None) -> Any:
        """Close, commit prices and every fill in one chunk."""
        self.close()
        self.commit_prices(prices, flows)
        fills = self.fills(matched)
        self.commit(fills)
        return fills

    def settlement(self, fills: list[tuple[int, int, int]]) -> list[tuple[int, int, int, int]]:
        return [(oid, q, p, self.orders[oid]["lock"]) for oid, q, p in fills]

    def settle(self, readings: list[Any], chunk: int | None = None, sender: Any = None) -> Any:
        """Settles commit chunk `chunk` (default: every chunk, last first; returns the last tx)."""
        chunks = range(len(self.chunks) - 1, -1, -1) if chunk is None else [chunk]
        tx = None
        for c in chunks:
            tx = self.d.market.settle(
                self.k, c, self.settlement(self.chunks[c]), readings_sorted(readings),
                {"from": sender or self.d.operator},
            )
        return tx


def sign_reading(d: Deployed, who: Any, k: int, exported: int, imported: int = 0, signer: Any = None) -> Any:
    """A SignedReading tuple: `who`'s reading for interval k, signed by `signer` (default `who`)."""
    data = meter_typed_data(chain.id, d.market.address, who.address, k, exported, imported)
    signed = Account.sign_message(encode_typed_data(full_message=data), (signer or who).private_key)
    r, vs = compact_signature(bytes(signed.signature))
    return ((who.address, k, exported, imported), r, vs)


def readings_sorted(readings: list[Any]) -> list[Any]:
    return sorted(readings, key=lambda r: int(r[0][0], 16))


def fee_free(d: Deployed) -> int:
    return free_locked(d, d.fee)[0]


def plain(value: Any) -> Any:
    """brownie return values and event fields as plain Python (ints, str addresses, tuples)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        return tuple(plain(v) for v in value)
    return value


def free_locked(d: Deployed, who: Any) -> tuple[int, int]:
    a = d.market.accountOf(who)
    return int(a[0]), int(a[1])


def decode_order_id(oid: int) -> tuple[int, bool, str, int]:
    """(interval, is bid, owner, nonce) of an order id (see IEnergyMarket)."""
    return oid >> 192, bool(oid >> 191 & 1), "0x" + f"{(oid >> 31) & ((1 << 160) - 1):040x}", oid & ((1 << 31) - 1)


def lapsed(d: Deployed, k: int) -> bool:
    """Whether interval k lapsed: Open or Closed and past its clear deadline."""
    iv = d.market.intervalOf(k)
    return int(iv[0]) in (1, 2) and chain.time() > int(iv[3])
