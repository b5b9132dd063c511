"""Shared fixtures: a real Ganache node on a free port and a deployed market."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from eth_account.signers.local import LocalAccount
from nacl.signing import SigningKey
from web3 import Web3

from app.deploy import TOKEN_UNIT, ParticipantSpec, deploy_seeded_market, register_participants
from app.devnet import Ganache
from gridswarm.chain import Deployment, TxSender, chain_time, connect
from gridswarm.keys import derive_ed25519, derive_eth_account


@pytest.fixture(scope="session")
def ganache() -> Iterator[Ganache]:
    with Ganache() as node:
        yield node


@dataclass
class Market:
    w3: Web3
    dep: Deployment
    admin: LocalAccount
    operator: LocalAccount
    coordinator_key: SigningKey
    participants: list[ParticipantSpec]
    seed: int = 0  # the participants' keys derive from it

    def sender(self, account: LocalAccount) -> TxSender:
        return TxSender(self.w3, account, self.dep.decoder())

    def add_participants(self, count: int) -> list[ParticipantSpec]:
        """Register ``count`` more participants (the next keys of the seed), funded like the
        first ones; returns them."""
        specs = _participant_specs(self.seed, len(self.participants), count)
        register_participants(self.w3, self.dep, self.admin, specs)
        self.participants.extend(specs)
        return specs

    @property
    def market(self):  # noqa: ANN201 - a web3 contract
        return self.dep.market_contract(self.w3)

    def ledger(self) -> tuple[int, int, int]:
        """(tokens the market holds, every participant's and the admin's internal balance,
        of which locked in escrow)."""
        held = int(self.dep.token_contract(self.w3).functions.balanceOf(self.dep.market).call())
        total = locked = 0
        for a in [p.account.address for p in self.participants] + [self.admin.address]:
            free, lk, *_ = self.market.functions.accountOf(a).call()
            total += int(free) + int(lk)
            locked += int(lk)
        return held, total, locked

    def advance_chain(self, seconds: int) -> int:
        """Move the chain's clock ``seconds`` ahead and mine a block at the new time (Ganache's
        ``evm_increaseTime`` and ``evm_mine``), so a deadline judged by the chain passes without
        the test waiting for it; returns the new chain time. The offset stays for every later
        block of this node."""
        for method, params in (("evm_increaseTime", [int(seconds)]), ("evm_mine", [])):
            reply = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
            assert "error" not in reply, (method, reply)
        return chain_time(self.w3)

    def assert_conserved_and_unlocked(self) -> None:
        """Value is conserved (the tokens the market holds = the internal balances) and no
        escrow lock is left."""
        held, total, locked = self.ledger()
        assert total == held, f"value not conserved: {total} in balances, {held} held"
        assert locked == 0, f"{locked} base units still locked"


_counter = iter(range(10_000))


def deploy_fresh(ganache: Ganache, n_participants: int = 4, *, clear_timeout_s: int = 3600,
                 settle_timeout_s: int = 3600) -> Market:
    """A fresh token + market with its own keys (each call uses a new seed); short timeouts
    make intervals lapse within a test (parameter changes after deployment wait a delay)."""
    seed = 9_000 + next(_counter)
    w3 = connect(ganache.url)
    admin, operator, coord, dep = deploy_seeded_market(
        w3, seed, clear_timeout_s=clear_timeout_s, settle_timeout_s=settle_timeout_s
    )
    specs = _participant_specs(seed, 0, n_participants)
    register_participants(w3, dep, admin, specs)
    return Market(w3, dep, admin, operator, coord, specs, seed)


def _participant_specs(seed: int, start: int, count: int) -> list[ParticipantSpec]:
    return [
        ParticipantSpec(
            derive_eth_account(seed, "agent", i),
            derive_ed25519(seed, "agent", i),
            tokens=1_000 * TOKEN_UNIT,
            deposit=100 * TOKEN_UNIT,
        )
        for i in range(start, start + count)
    ]


@pytest.fixture
def market(ganache: Ganache) -> Market:
    return deploy_fresh(ganache)
