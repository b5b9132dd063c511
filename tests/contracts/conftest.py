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
from brownie import EnergyMarket, GridToken, accounts, chain, network
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


@pytest.fixture(scope="module")
def d(keyed: list[Any]) -> Deployed:
    admin, operator, fee, outsider = keyed[0], keyed[1], keyed[10], keyed[11]
    sellers, buyers = keyed[2:6], keyed[6:10]
    token = GridToken.deploy(admin, {"from": admin})
    market = EnergyMarket.deploy(token, admin, operator, RATE, CLEAR_TIMEOUT, SETTLE_TIMEOUT, {"from": admin})
    market.setParameters(RATE, CLEAR_TIMEOUT, SETTLE_TIMEOUT, fee, {"from": admin})
    for i, p in enumerate([*sellers, *buyers]):
        market.registerParticipant(p, key(i + 1), i % 2, {"from": admin})
        token.mint(p, 10 * DEPOSIT, {"from": admin})
        token.approve(market, 2**256 - 1, {"from": p})
        market.deposit(DEPOSIT, {"from": p})
    token.mint(outsider, DEPOSIT, {"from": admin})
    token.approve(market, 2**256 - 1, {"from": outsider})
    return Deployed(token, market, admin, operator, sellers, buyers, outsider, fee)


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

    def open(self) -> Interval:
        self.d.market.openInterval(self.k, {"from": self.d.operator})
        return self

    def post(self, who: Any, side: int, qty: int, price: int) -> int:
        tx = self.d.market.postOrder(self.k, side, qty, price, {"from": who})
        ev = tx.events["OrderPosted"]
        oid = int(ev["orderId"])
        self.orders[oid] = {"owner": who, "side": side, "qty": qty, "price": price, "lock": int(ev["locked"])}
        return oid

    def close(self) -> Any:
        return self.d.market.closeInterval(self.k, {"from": self.d.operator})

    def fills(self, matched: dict[int, tuple[int, int]]) -> list[tuple[int, int, int]]:
        """One fill per live order in ascending id: `matched` gives (qty, price) per order id."""
        return [(oid, *matched.get(oid, (0, 0))) for oid in sorted(self.orders)]

    def commit(self, fills: list[tuple[int, int, int]], last: bool = True) -> Any:
        return self.d.market.commitFills(self.k, fills, last, {"from": self.d.operator})

    def settlement(self, fills: list[tuple[int, int, int]]) -> list[tuple[int, int, int, int]]:
        return [(oid, q, p, self.orders[oid]["lock"]) for oid, q, p in fills]

    def settle(self, fills: list[tuple[int, int, int]], readings: list[Any]) -> Any:
        return self.d.market.settle(self.k, self.settlement(fills), readings, {"from": self.d.operator})


def sign_reading(d: Deployed, who: Any, k: int, exported: int, imported: int = 0, signer: Any = None) -> Any:
    """A SignedReading tuple: `who`'s reading for interval k, signed by `signer` (default `who`)."""
    data = meter_typed_data(chain.id, d.market.address, who.address, k, exported, imported)
    signed = Account.sign_message(encode_typed_data(full_message=data), (signer or who).private_key)
    r, vs = compact_signature(bytes(signed.signature))
    return ((who.address, k, exported, imported), r, vs)


def readings_sorted(readings: list[Any]) -> list[Any]:
    return sorted(readings, key=lambda r: int(r[0][0], 16))


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
