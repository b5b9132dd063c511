"""The market loop commits fills in gas-bounded chunks that the contract accepts as one result.

Runs ``MarketLoop.clear_and_commit`` against a real Ganache whose block gas limit is small: just
above what deploying the market needs (any contract within EIP-170's 24 KiB code limit deploys
under it), so a book of about a thousand orders cannot be committed in one transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import random
from collections import defaultdict
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from pydantic import ValidationError

from app.deploy import ParticipantSpec
from app.devnet import Ganache
from coordinator.market import loop as loop_module
from coordinator.market.commit_plan import readings_for
from coordinator.market.loop import MarketLoop
from coordinator.settings import MarketSettings
from gridswarm.chain import compact_signature, connect
from gridswarm.clock import WallClock
from tests.conftest import Market, deploy_fresh
from tests.coordinator.loop_support import build_loop, store_readings

BLOCK_GAS = 5_600_000
PER_PARTICIPANT = 15  # orders each participant posts in the big book (the contract keeps 16 in flight)
POST_GAS = 150_000  # about three times what postOrder takes (bench/gas-snapshot.json)
WEEK = 7 * 86_400
WARM_UP, BIG, RETRY, TINY, RESUME = 1_980_001, 1_980_002, 1_980_003, 1_980_004, 1_980_005
CLEARED = 3  # IntervalStatus.Cleared
CLOSED = 2


@dataclasses.dataclass
class Rig:
    m: Market
    loop: MarketLoop

    @property
    def market(self) -> Any:
        return self.m.market


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    db = tmp_path_factory.mktemp("commit") / "coordinator.sqlite"
    # No cap on fills per transaction: gas alone decides the split.
    settings = MarketSettings(commit_chunk=1_000_000, commit_gas_fraction=0.5)
    with Ganache(block_gas_limit=BLOCK_GAS) as node:
        m = deploy_fresh(node, 16, clear_timeout_s=WEEK, settle_timeout_s=WEEK)
        m = dataclasses.replace(m, w3=connect(node.url, timeout_s=300.0))  # a commit of millions of gas takes a while
        yield Rig(m, build_loop(m, settings, WallClock(), Path(db), receipt_timeout_s=300.0))


def _side(owner: int) -> int:
    """The side participant ``owner`` (an index into the list posting) posts: even ones sell
    (1, an offer), odd ones buy (0, a bid) -- the contract's Side enum."""
    return 1 if owner % 2 == 0 else 0


def _book(n: int, people: int, seed: int, per_participant: int) -> list[tuple[int, int, int, int]]:
    """``n`` orders (participant index, side, qty Wh, price): order ``i`` belongs to participant
    ``i mod ceil(n / per_participant)``; 100..5,000 Wh; bids around 260 and offers around 240
    base units per Wh (sd 60), so about half the volume crosses."""
    owners = math.ceil(n / per_participant)
    assert owners <= people, f"{n} orders need {owners} participants"
    rng = random.Random(seed)
    book = []
    for i in range(n):
        side = _side(i % owners)
        price = round(rng.gauss(260.0 if side == 0 else 240.0, 60.0))
        book.append((i % owners, side, rng.randint(100, 5_000), min(max(price, 1), 1_000)))
    return book


def _post_and_close(
    rig: Rig, k: int, n: int, people: list[ParticipantSpec], per_participant: int
) -> list[dict[str, Any]]:
    """Open ``k``, post a book of ``n`` orders (each participant its own orders in turn, all
    participants at once, so the chain sees them interleaved), close it and index it."""
    market, op = rig.market, rig.loop.operator
    op.transact(market.functions.openInterval(k))
    mine: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for owner, side, qty, price in _book(n, len(people), k, per_participant):
        mine[owner].append((side, qty, price))

    def post(owner: int) -> None:
        sender = rig.m.sender(people[owner].account)
        for side, qty, price in mine[owner]:
            sender.transact(market.functions.postOrder(k, side, qty, price), gas=POST_GAS)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(post, mine))
    op.transact(market.functions.closeInterval(k))
    rig.loop.indexer.sync()
    return rig.loop.store.query("select * from orders where interval = ?", [k])


@pytest.fixture(scope="module")
def gas_per_fill(rig: Rig) -> tuple[float, float]:
    """(fixed, per fill) gas of a commit transaction, from estimates on a small warm-up interval."""
    rows = _post_and_close(rig, WARM_UP, 16, rig.m.participants[:16], per_participant=1)
    top = 2**24 - 1  # at the top price every bid is out of the money: a zero fill is valid
    rig.loop.operator.transact(rig.market.functions.commitPrices(WARM_UP, [(0, top)], []))
    fills = sorted((int(r["id"]), 0, top) for r in rows if r["side"] == "bid")
    one = rig.loop._estimate_commit(WARM_UP, fills[:1], False)
    many = rig.loop._estimate_commit(WARM_UP, fills, False)
    per_fill = (many - one) / (len(fills) - 1)
    return one - per_fill, per_fill


def _readings(
    rig: Rig, fills: list[tuple[int, int, int]], rows: list[dict[str, Any]]
) -> dict[LocalAccount, tuple[int, int]]:
    """(exported, imported) Wh of every participant with an order: what its fills traded, but
    one seller in ten delivers 90 %."""
    owner_of = {int(r["id"]): (r["owner"], r["side"]) for r in rows}
    traded: dict[str, list[int]] = {r["owner"]: [0, 0] for r in rows}
    for oid, qty, _ in fills:
        owner, side = owner_of[oid]
        traded[owner][0 if side == "offer" else 1] += qty
    account = {p.account.address: p.account for p in rig.m.participants}
    return {
        account[a]: (exported * 9 // 10 if j % 10 == 9 else exported, imported)
        for j, (a, (exported, imported)) in enumerate(sorted(traded.items()))
    }


def _fills_hash(fills: list[tuple[int, int, int]], locks: dict[int, int], chunk: int) -> bytes:
    """The contract's hash of commit chunk ``chunk``: from h = chunk + 1,
    h = keccak256(abi.encode(h, orderId, qty, price, lock)) per fill."""
    h = (chunk + 1).to_bytes(32, "big")
    for oid, qty, price in fills:
        h = keccak(
            abi_encode(["bytes32", "uint256", "uint256", "uint256", "uint256"], [h, oid, qty, price, locks[oid]])
        )
    return h


def _as_tuple(f: Any) -> tuple[int, int, int]:
    if isinstance(f, Mapping):
        return int(f["orderId"]), int(f["qty"]), int(f["price"])
    return int(f[0]), int(f[1]), int(f[2])


def _commit_receipts(rig: Rig, k: int) -> list[Any]:
    row = rig.loop.store.one("select commit_txs from intervals where id = ?", [k])
    assert row is not None
    return [rig.m.w3.eth.get_transaction_receipt(h) for h in json.loads(row["commit_txs"])]


def _operator_failures(rig: Rig, since_block: int) -> list[Any]:
    """Receipts of the operator's failed transactions mined after ``since_block``."""
    failed = []
    for number in range(since_block + 1, rig.m.w3.eth.block_number + 1):
        for tx in rig.m.w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["from"] == rig.loop.operator.address:
                receipt = rig.m.w3.eth.get_transaction_receipt(tx["hash"])
                if receipt["status"] != 1:
                    failed.append(receipt)
    return failed


def _check_one_result(rig: Rig, k: int, chunks: list[list[tuple[int, int, int]]], rows: list[dict[str, Any]]) -> Any:
    """The chain holds exactly ``chunks`` for ``k``, finalised once; returns the IntervalCleared args."""
    market = rig.market
    fills = [f for c in chunks for f in c]
    assert all(c[-1][0] >> 31 != n[0][0] >> 31 for c, n in itertools.pairwise(chunks)), "a chunk split an owner"
    cleared = market.events.IntervalCleared().get_logs(from_block=rig.m.dep.block, argument_filters={"interval": k})
    assert len(cleared) == 1
    ev = cleared[0]["args"]
    assert ev["fills"] == len(rows) == len(fills)
    locks = {int(r["id"]): int(r["locked"]) for r in rows}
    assert ev["fillsHash"] == _fills_hash(chunks[-1], locks, len(chunks) - 1)
    assert ev["boughtWh"] == ev["soldWh"]
    committed = [
        _as_tuple(f)
        for log in market.events.FillsCommitted().get_logs(from_block=rig.m.dep.block, argument_filters={"interval": k})
        for f in log["args"]["fills"]
    ]
    assert committed == fills
    status, _live, n_committed, *_ = market.functions.intervalOf(k).call()
    assert (status, n_committed) == (CLEARED, len(fills))
    return cleared[0]


def test_a_book_over_the_block_gas_limit_is_committed_in_several_transactions_as_one_result(
    rig: Rig, gas_per_fill: tuple[float, float]
) -> None:
    fixed, per_fill = gas_per_fill
    n = math.ceil(1.1 * (BLOCK_GAS - fixed) / per_fill)  # about 10 % more than one block holds
    people = rig.m.add_participants(math.ceil(n / PER_PARTICIPANT))  # fresh: no order of theirs in flight
    rows = _post_and_close(rig, BIG, n, people, PER_PARTICIPANT)

    fills, result, _ = asyncio.run(rig.loop.clear_and_commit(BIG))

    receipts = _commit_receipts(rig, BIG)
    used = [int(r["gasUsed"]) for r in receipts]
    budget = int(BLOCK_GAS * rig.loop.cfg.commit_gas_fraction)
    assert sum(used) > BLOCK_GAS, "the book must not fit one transaction"
    assert len(receipts) >= 3
    assert max(used) <= budget
    assert all(r["status"] == 1 for r in receipts)
    cleared = _check_one_result(rig, BIG, fills, rows)
    assert cleared["transactionHash"] == receipts[-1]["transactionHash"]  # only the last chunk finalises
    assert cleared["args"]["boughtWh"] == result.volume_wh > 0
    stored = rig.loop.store.one("select gas_commit from intervals where id = ?", [BIG])
    assert stored is not None and stored["gas_commit"] == sum(used)


def test_a_chunk_that_runs_out_of_gas_changes_nothing_and_is_retried_smaller(
    rig: Rig, gas_per_fill: tuple[float, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A budget of 0.1 block (560k gas) holds about a hundred fills; the prior gas per fill that
    # sizes the first chunk is set to a third of the truth, so the first chunk is three times
    # too large.
    monkeypatch.setattr(rig.loop, "cfg", rig.loop.cfg.model_copy(update={"commit_gas_fraction": 0.1}))
    monkeypatch.setattr(loop_module, "COMMIT_PRIOR_GAS_PER_FILL", gas_per_fill[1] / 3)
    rows = _post_and_close(rig, RETRY, 150, rig.m.participants[:15], per_participant=10)
    before = rig.m.w3.eth.block_number

    fills, _, _ = asyncio.run(rig.loop.clear_and_commit(RETRY))

    failed = _operator_failures(rig, before)
    assert len(failed) == 1
    # Ran out of gas at the budget, no more: the fill checks run in the market's commit library,
    # which gets all but 1/64 of the gas left at the call (EIP-150); the market reverts with that.
    budget = int(0.1 * BLOCK_GAS)
    assert budget * 63 // 64 <= int(failed[0]["gasUsed"]) <= budget
    receipts = _commit_receipts(rig, RETRY)
    assert len(receipts) >= 2
    assert max(int(r["gasUsed"]) for r in receipts) <= int(0.1 * BLOCK_GAS)
    _check_one_result(rig, RETRY, fills, rows)
    stored = rig.loop.store.one("select gas_commit from intervals where id = ?", [RETRY])
    assert stored is not None
    assert stored["gas_commit"] == sum(int(r["gasUsed"]) for r in receipts) + int(failed[0]["gasUsed"])


def test_a_budget_below_one_fill_is_refused_before_any_fill_is_sent(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rig.loop, "cfg", rig.loop.cfg.model_copy(update={"commit_gas_fraction": 0.001}))
    _post_and_close(rig, TINY, 10, rig.m.participants[:10], per_participant=1)
    before = rig.m.w3.eth.block_number

    with pytest.raises(ValueError, match=r"one fill needs \d+ gas, over the commit budget of 5600"):
        asyncio.run(rig.loop.clear_and_commit(TINY))

    assert rig.m.w3.eth.block_number == before + 1  # the zone prices only: estimates need them
    status, _live, committed, *_ = rig.market.functions.intervalOf(TINY).call()
    assert (status, committed) == (CLOSED, 0)


def test_settlement_goes_chunk_by_chunk_and_resumes_where_the_chain_stands(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rig.loop, "cfg", rig.loop.cfg.model_copy(update={"commit_chunk": 4}))
    _post_and_close(rig, RESUME, 20, rig.m.participants[:10], per_participant=2)
    chunks, _, _ = asyncio.run(rig.loop.clear_and_commit(RESUME))
    assert len(chunks) >= 3
    assert rig.loop.committed_chunks(RESUME) == chunks  # rebuilt from the chain after a restart
    # A coordinator that settled the last chunk and then restarted: it starts over from the
    # last chunk, the contract names the next one, and the loop goes on from there.
    last = len(chunks) - 1
    rows = rig.loop.store.query("select * from orders where interval = ?", [RESUME])
    store_readings(rig.loop, rig.m, RESUME, _readings(rig, [f for c in chunks for f in c], rows))  # every owner signs
    signed = {
        r["participant"]: (
            (r["participant"], RESUME, int(r["exported_wh"]), int(r["imported_wh"])),
            *compact_signature(r["signature"]),
        )
        for r in rig.loop.store.query("select * from readings where interval = ?", [RESUME])
    }
    locks = {int(r["id"]): int(r["locked"]) for r in rows}
    rig.loop.operator.transact(
        rig.market.functions.settle(
            RESUME, last, [(o, q, p, locks[o]) for o, q, p in chunks[last]], readings_for(chunks[last], signed)
        )
    )
    asyncio.run(rig.loop.settle(RESUME, rig.loop.committed_chunks(RESUME)))
    status, *_ = rig.market.functions.intervalOf(RESUME).call()
    assert status == 4  # Settled
    settled = rig.market.events.FillsSettled().get_logs(
        from_block=rig.m.dep.block, argument_filters={"interval": RESUME}
    )
    assert len(settled) == len(chunks)  # every chunk once


@pytest.mark.parametrize(("chunk", "fraction"), [(0, 0.5), (300, 0.0), (300, 1.5)])
def test_commit_settings_out_of_range_are_rejected(chunk: int, fraction: float) -> None:
    with pytest.raises(ValidationError, match="commit_chunk|commit_gas_fraction"):
        MarketSettings(commit_chunk=chunk, commit_gas_fraction=fraction)
