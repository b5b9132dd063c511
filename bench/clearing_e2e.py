"""Clearing end to end on Ganache: ``gridswarm bench e2e`` / ``scripts/bench_e2e_clearing.py``.

For each book size the benchmark runs one delivery interval through the coordinator's own
:class:`~coordinator.market.loop.MarketLoop` on a Ganache node it starts itself:

1. open the interval; participants post a seeded random book of bids and offers on chain
   (each participant one side, several orders, posted in shuffled order);
2. close the gate, then time ``MarketLoop.clear_and_commit``: index the orders from the chain's
   events, clear them with the engine, commit the fills in gas-bounded chunks — from gate closure
   to the last fill committed on chain;
3. every participant with an order signs an EIP-712 meter reading (sellers export what they
   sold, one in ten delivers only 90 %; buyers import what they bought), sends it to the
   coordinator's hub in a signed envelope, and ``MarketLoop.settle`` settles the interval in one
   transaction, which shows the interval settles under the block gas limit.

Set-up (registering participants, posting orders) is not what is measured, so it goes fast:
transactions are signed locally with tracked nonces and explicit gas, and their receipts are
checked afterwards. Per size it records orders, commit transactions, commit gas (total, per
fill, largest transaction against the budget), settle gas and the seconds from gate closure to
fills committed and to settle. Writes ``bench/results/clearing_e2e.json``. Timings are this
machine's; tests never assert them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import logging
import math
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from nacl.signing import SigningKey
from pydantic import ValidationError
from web3 import Web3

from app.compile import EVM_VERSION, ROOT, SOLC_VERSION
from app.deploy import TOKEN_UNIT, deploy_seeded_market
from app.devnet import Ganache
from bench.info import machine, write_results
from coordinator.hub import Hub
from coordinator.indexer import Indexer
from coordinator.market.clearing import Order, clear
from coordinator.market.loop import MarketLoop
from coordinator.settings import MarketSettings
from coordinator.store import Store
from gridswarm.chain import ChainError, Deployment, TxSender, connect, sign_meter_reading
from gridswarm.clock import WallClock
from gridswarm.envelope import Signer
from gridswarm.keys import derive_ed25519, derive_eth_account
from gridswarm.validation import error_lines

logger = logging.getLogger(__name__)

DEFAULT_SIZES = (100, 500, 1_000, 2_000, 3_000)
DEFAULT_OUT = ROOT / "bench" / "results" / "clearing_e2e.json"
ORDERS_PER_PARTICIPANT = 10  # below the contract's ORDER_SLOTS (orders in flight per account)
FIRST_INTERVAL = 1_980_000  # 15-minute intervals since the epoch, mid-2026
INTERVAL_S = 900.0
MAX_FEE = 100 * 10**9
PRIORITY_FEE = 10**9
MINT = 200 * TOKEN_UNIT
DEPOSIT = 100 * TOKEN_UNIT  # covers ten bids of 5,000 Wh at up to 1,000 base units per Wh


class BenchError(RuntimeError):
    """The benchmark could not run; the message says why."""


# ---------------------------------------------------------------------- fast set-up


class RawSender:
    """Signs transactions locally with tracked nonces and explicit gas; a worker thread sends them
    in order while the next ones are signed; :meth:`check` waits for them all and fails on a
    revert.

    Gas is estimated once per function (the first call) and given with a margin to the later
    calls of that function, so a transaction costs one round trip. Ganache mines each
    transaction as it arrives, so dependent transactions only need to be sent in order.
    """

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self.chain_id = int(w3.eth.chain_id)
        self.nonces: dict[str, int] = {}
        self.pending: list[tuple[str, bytes]] = []
        self.gas: dict[str, int] = {}
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._errors: list[str] = []
        self._worker: threading.Thread | None = None

    def _send_loop(self) -> None:
        provider = Web3.HTTPProvider(self.w3.provider.endpoint_uri, request_kwargs={"timeout": 300})  # type: ignore[attr-defined]
        while (raw := self._queue.get()) is not None:
            try:
                response = provider.make_request("eth_sendRawTransaction", ["0x" + raw.hex()])  # type: ignore[arg-type]
                if "error" in response:
                    self._errors.append(str(response["error"]))
            except Exception as exc:  # noqa: BLE001 - reported by check()
                self._errors.append(f"{exc.__class__.__name__}: {exc}")
            finally:
                self._queue.task_done()

    def send(self, account: LocalAccount, call: Any) -> bytes:
        address = account.address
        if address not in self.nonces:
            self.nonces[address] = int(self.w3.eth.get_transaction_count(address, "pending"))
        name = str(getattr(call, "fn_name", "tx"))
        if name not in self.gas:
            self.check()  # the estimate needs the state the earlier transactions make
            self.gas[name] = int(call.estimate_gas({"from": address})) * 3 // 2 + 50_000
        params = {
            "from": address,
            "nonce": self.nonces[address],
            "chainId": self.chain_id,
            "gas": self.gas[name],
            "maxFeePerGas": MAX_FEE,
            "maxPriorityFeePerGas": PRIORITY_FEE,
        }
        signed = account.sign_transaction(call.build_transaction(params))
        if self._worker is None:
            self._worker = threading.Thread(target=self._send_loop, name="raw-sender", daemon=True)
            self._worker.start()
        self._queue.put(bytes(signed.raw_transaction))
        self.nonces[address] += 1
        self.pending.append((name, bytes(signed.hash)))
        return bytes(signed.hash)

    def close(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=30)
            self._worker = None

    def check(self, timeout_s: float = 120.0) -> list[Any]:
        """Wait for every pending transaction; return their receipts in sending order."""
        self._queue.join()
        errors, self._errors = self._errors, []
        pending, self.pending = self.pending, []
        if errors:
            raise BenchError(f"{len(errors)} set-up transaction(s) not accepted, first: {errors[0]}")
        if not pending:
            return []
        self.w3.eth.wait_for_transaction_receipt(HexBytes(pending[-1][1]), timeout=timeout_s)
        receipts: list[Any] = []
        for start in range(0, len(pending), 500):
            part = pending[start : start + 500]
            with self.w3.batch_requests() as batch:
                for _, h in part:
                    batch.add(self.w3.eth.get_transaction_receipt(HexBytes(h)))
                receipts.extend(batch.execute())
        for (name, h), r in zip(pending, receipts, strict=True):
            if int(r["status"]) != 1:
                raise BenchError(f"set-up transaction {name} 0x{h.hex()} reverted")
        return receipts


@dataclass
class Participant:
    account: LocalAccount
    ed25519: SigningKey
    side: int  # 0 bid (buyer), 1 offer (seller) -- the contract's Side enum
    signer: Signer | None = None


@dataclass
class Rig:
    """A deployed market and the coordinator's parts, built as ``coordinator/service.py`` does."""

    w3: Web3
    dep: Deployment
    admin: LocalAccount
    participants: list[Participant]
    store: Store
    hub: Hub
    indexer: TimedIndexer
    loop: MarketLoop
    raw: RawSender
    seed: int
    clock: WallClock = field(default_factory=WallClock)

    @property
    def market(self) -> Any:
        return self.dep.market_contract(self.w3)


class TimedIndexer(Indexer):
    """The coordinator's indexer, remembering how long its syncs took."""

    seconds = 0.0

    def sync(self, to_block: int | None = None) -> int:
        t0 = time.perf_counter()
        try:
            return super().sync(to_block)
        finally:
            self.seconds += time.perf_counter() - t0


def onboard(w3: Web3, dep: Deployment, admin: LocalAccount, people: list[Participant], raw: RawSender) -> None:
    """Fund, register, mint, approve and deposit for every participant, pipelined."""
    market, token = dep.market_contract(w3), dep.token_contract(w3)
    funder = w3.eth.accounts[0]
    hashes = [
        w3.eth.send_transaction(
            {"from": funder, "to": p.account.address, "value": Web3.to_wei(10, "ether"), "gas": 21_000}
        )
        for p in people
    ]
    if hashes:
        w3.eth.wait_for_transaction_receipt(hashes[-1])
    for p in people:
        raw.send(admin, market.functions.registerParticipant(p.account.address, bytes(p.ed25519.verify_key), 0))
        raw.send(admin, token.functions.mint(p.account.address, MINT))
    for p in people:
        raw.send(p.account, token.functions.approve(dep.market, 2**256 - 1))
        raw.send(p.account, market.functions.deposit(DEPOSIT))
    raw.check()


def build_rig(url: str, n_participants: int, seed: int, cfg: MarketSettings, db_path: Path) -> Rig:
    """Deploy a market on the node at ``url``, onboard participants, and build the coordinator."""
    w3 = connect(url, timeout_s=300.0)
    admin, operator, coordinator_key, dep = deploy_seeded_market(
        w3, seed, eth_each=1_000 * 10**18, clear_timeout_s=7 * 86_400, settle_timeout_s=7 * 86_400
    )
    people = new_participants(seed, 0, n_participants)
    raw = RawSender(w3)
    onboard(w3, dep, admin, people, raw)
    clock = WallClock()
    store = Store(db_path)
    seq = itertools.count(1)
    hub = Hub(store, clock, Signer(coordinator_key, "coordinator", clock, seq.__next__), dep.chain_id, dep.market)
    indexer = TimedIndexer(w3, dep, store)
    operator_tx = TxSender(w3, operator, dep.decoder(), receipt_timeout_s=300.0)
    loop = MarketLoop(cfg, clock, store, hub, indexer, operator_tx, dep)
    indexer.sync()  # registration events: the running coordinator indexes them as they happen
    return Rig(w3, dep, admin, people, store, hub, indexer, loop, raw, seed, clock)


def add_participants(rig: Rig, count: int) -> list[Participant]:
    """Onboard ``count`` more participants (the next indices of the rig's seed)."""
    people = new_participants(rig.seed, len(rig.participants), count)
    onboard(rig.w3, rig.dep, rig.admin, people, rig.raw)
    rig.participants.extend(people)
    rig.indexer.sync()
    return people


def new_participants(seed: int, start: int, count: int) -> list[Participant]:
    """Participants ``start .. start + count - 1`` of ``seed``; even ones sell, odd ones buy."""
    return [
        Participant(derive_eth_account(seed, "agent", i), derive_ed25519(seed, "agent", i), side=1 if i % 2 == 0 else 0)
        for i in range(start, start + count)
    ]


def order_slots(market: Any) -> int | None:
    """How many orders one account may have in flight, if the contract limits it."""
    try:
        return int(market.functions.ORDER_SLOTS().call())
    except Exception:  # noqa: BLE001 - a contract without order slots has no such limit
        return None


# ---------------------------------------------------------------------- the book


def make_book(
    n: int, people: list[Participant], seed: int, per_participant: int = ORDERS_PER_PARTICIPANT
) -> list[tuple[int, int, int, int]]:
    """``n`` orders ``(participant index, side, qty Wh, price)`` in a shuffled posting order.

    Order ``i`` belongs to participant ``i mod P`` (``P = ceil(n / per_participant)``), who
    posts its own side. Quantities 100..5,000 Wh; prices in token base units per Wh like the clearing
    benchmark: bids ~ N(260, 60), offers ~ N(240, 60), clipped to 1..1,000, so about half the
    volume crosses.
    """
    rng = np.random.default_rng(seed)
    n_people = math.ceil(n / per_participant)
    if n_people > len(people):
        raise BenchError(f"{n} orders need {n_people} participants, only {len(people)} registered")
    owners = np.arange(n) % n_people
    sides = np.array([people[o].side for o in owners])
    qty = rng.integers(100, 5_001, n)
    price = np.clip(np.rint(rng.normal(np.where(sides == 0, 260.0, 240.0), 60.0)), 1, 1_000).astype(int)
    order = rng.permutation(n)
    return [(int(owners[i]), int(sides[i]), int(qty[i]), int(price[i])) for i in order]


# ---------------------------------------------------------------------- one interval


def run_interval(rig: Rig, k: int, n: int, seed: int) -> dict[str, Any]:
    loop, market, w3 = rig.loop, rig.market, rig.w3
    book = make_book(n, rig.participants, seed)
    start = k * INTERVAL_S
    loop.operator.transact(market.functions.openInterval(k))
    rig.store.upsert_interval(k, status="open", delivery_start=start, delivery_end=start + INTERVAL_S)

    t0 = time.perf_counter()
    for owner, side, qty, price in book:
        rig.raw.send(rig.participants[owner].account, market.functions.postOrder(k, side, qty, price))
    receipts = rig.raw.check()
    post_seconds = time.perf_counter() - t0
    post_gas = sum(int(r["gasUsed"]) for r in receipts)

    loop.operator.transact(market.functions.closeInterval(k))
    # Gate closed on chain: from here to the last fill committed is what the operator waits for.
    rig.indexer.seconds = 0.0
    t0 = time.perf_counter()
    chunks, result, _ = asyncio.run(loop.clear_and_commit(k))
    fills = [f for chunk in chunks for f in chunk]  # the commit chunks, in order
    commit_seconds = time.perf_counter() - t0
    index_seconds = rig.indexer.seconds

    row = rig.store.one("select commit_txs, gas_commit from intervals where id = ?", [k]) or {}
    txs = json.loads(row.get("commit_txs") or "[]")
    tx_gas = [int(w3.eth.get_transaction_receipt(h)["gasUsed"]) for h in txs]
    commit_bytes = max(len(w3.eth.get_transaction(h)["input"]) for h in txs)
    status, _live, committed, *_ = market.functions.intervalOf(k).call()
    cleared_events = market.events.IntervalCleared().get_logs(
        from_block=rig.dep.block, argument_filters={"interval": k}
    )
    if status != 3 or committed != n or len(cleared_events) != 1:
        raise BenchError(
            f"interval {k}: status {status}, {committed} of {n} fills committed, {len(cleared_events)} IntervalCleared"
        )

    # The book again, through the engine alone (outside the timed section), for the breakdown.
    orders = rig.store.query(
        "select * from orders where interval = ? and status = 'open' order by block, log_index", [k]
    )
    book_orders = [
        Order(id=i, side=r["side"], qty_wh=int(r["qty_wh"]), price=int(r["price"]), zone="0", seq=i)
        for i, r in enumerate(orders)
    ]
    t1 = time.perf_counter()
    clear(book_orders, mechanism=loop.cfg.mechanism)
    engine_seconds = time.perf_counter() - t1

    readings = send_readings(rig, k, fills, orders)
    rig.indexer.seconds = 0.0
    t0 = time.perf_counter()
    settle_error = None
    try:
        receipt = asyncio.run(loop.settle(k, chunks))  # one transaction per commit chunk
        stored = rig.store.one("select gas_settle from intervals where id = ?", [k]) or {}
        settle_gas: int | None = int(stored.get("gas_settle") or receipt["gasUsed"])
        settle_bytes: int | None = len(w3.eth.get_transaction(receipt["transactionHash"])["input"])
    except ChainError as exc:  # e.g. more gas than a block holds: recorded, not fatal
        settle_error, settle_gas, settle_bytes = str(exc)[:300], None, None
    settle_seconds = time.perf_counter() - t0
    status, *_ = market.functions.intervalOf(k).call()
    if settle_error is None and status != 4:
        raise BenchError(f"interval {k} is not settled after settle (status {status})")

    block_gas = int(w3.eth.get_block("latest")["gasLimit"])
    budget = int(block_gas * loop.cfg.commit_gas_fraction)
    traded = sum(1 for _, q, _ in fills if q)
    side_of = {int(r["id"]): (r["owner"], r["side"]) for r in orders}
    submitted = len({side_of[oid][0] for oid, q, _ in fills if q})  # both sides' readings count
    return {
        "orders": n,
        "bids": sum(1 for o in book if o[1] == 0),
        "offers": sum(1 for o in book if o[1] == 1),
        "participants": math.ceil(n / ORDERS_PER_PARTICIPANT),
        "filled_orders": traded,
        "volume_wh": int(result.volume_wh),
        "clearing_price": result.price,
        "post_gas_per_order": round(post_gas / n),
        "post_seconds": round(post_seconds, 2),
        "commit_txs": len(txs),
        "commit_gas": int(row.get("gas_commit") or sum(tx_gas)),
        "commit_gas_per_fill": round(sum(tx_gas) / n),
        "commit_gas_largest_tx": max(tx_gas),
        "commit_budget": budget,
        "commit_under_budget": max(tx_gas) <= budget,
        "commit_calldata_bytes_largest_tx": commit_bytes,
        "readings_signed": readings,
        "readings_settled": submitted,
        "settled": settle_error is None,
        "settle_error": settle_error,
        "settle_gas": settle_gas,
        "settle_gas_per_fill": round(settle_gas / n) if settle_gas else None,
        "settle_calldata_bytes": settle_bytes,
        "settle_txs": len(chunks),
        "settle_share_of_block": round(settle_gas / block_gas, 3) if settle_gas else None,
        "seconds_gate_to_committed": round(commit_seconds, 3),
        "seconds_index": round(index_seconds, 3),
        "seconds_engine": round(engine_seconds, 4),
        "seconds_commit_chain": round(commit_seconds - index_seconds - engine_seconds, 3),
        "seconds_settle": round(settle_seconds, 3),
        "seconds_settle_index": round(rig.indexer.seconds, 3),
    }


def send_readings(rig: Rig, k: int, fills: list[tuple[int, int, int]], orders: list[dict[str, Any]]) -> int:
    """Every participant with an order in ``k`` signs its meter reading and sends it to the hub."""
    owner_of = {int(r["id"]): (r["owner"], r["side"]) for r in orders}
    exported: dict[str, int] = defaultdict(int)
    imported: dict[str, int] = defaultdict(int)
    for oid, qty, _ in fills:
        owner, side = owner_of[oid]
        (exported if side == "offer" else imported)[owner] += qty
        exported.setdefault(owner, 0)
        imported.setdefault(owner, 0)
    by_address: dict[str, Participant] = {p.account.address: p for p in rig.participants}
    for j, address in enumerate(sorted(exported)):
        p = by_address[address]
        export = exported[address] * 9 // 10 if j % 10 == 9 else exported[address]  # one in ten falls short
        sig = sign_meter_reading(p.account, rig.dep.chain_id, rig.dep.market, k, export, imported[address])
        if p.signer is None:
            p.signer = Signer(p.ed25519, p.account.address, rig.clock, itertools.count(1).__next__)
        env = p.signer.sign(
            "meter", {"interval": k, "exported_wh": export, "imported_wh": imported[address], "signature": sig}
        )
        rig.hub.handle(env.to_dict())
    return len(exported)


# ---------------------------------------------------------------------- the run


def measure(
    sizes: list[int],
    seed: int,
    cfg: MarketSettings,
    block_gas_limit: int,
    log: Any = print,
) -> dict[str, Any]:
    n_people = math.ceil(max(sizes) / ORDERS_PER_PARTICIPANT)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp, Ganache(block_gas_limit=block_gas_limit) as node:
        t0 = time.perf_counter()
        rig = build_rig(node.url, n_people, seed, cfg, Path(tmp) / "coordinator.sqlite")
        slots = order_slots(rig.market)
        if slots is not None and slots < ORDERS_PER_PARTICIPANT:
            raise BenchError(
                f"the contract allows {slots} orders in flight per account, the bench posts {ORDERS_PER_PARTICIPANT}"
            )
        log(f"deployed and registered {n_people} participants in {time.perf_counter() - t0:.1f} s")
        for i, n in enumerate(sizes):
            row = run_interval(rig, FIRST_INTERVAL + i, n, seed + n)
            rows.append(row)
            settled = f"{row['settle_gas']:,} gas" if row["settled"] else f"FAILED ({row['settle_error']})"
            log(
                f"{n:>6} orders: {row['commit_txs']} commit tx(s), {row['commit_gas']:,} gas "
                f"({row['commit_gas_per_fill']:,}/fill), settle {settled}; "
                f"gate->committed {row['seconds_gate_to_committed']:.2f} s, settle {row['seconds_settle']:.2f} s"
            )
        client = rig.w3.client_version
        rig.raw.close()
    return {"rows": rows, "client": client}


def _machine() -> dict[str, Any]:
    return machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def summary(rows: list[dict[str, Any]], block_gas_limit: int) -> dict[str, Any]:
    """The largest book cleared and settled, and how many fills one settle transaction can hold.

    Settlement takes every fill of an interval in one transaction, so its gas, not the commit's
    (which splits), bounds an interval's size. Its gas grows faster than linearly (memory
    expansion is quadratic), so a quadratic through the settled sizes (least squares) gives the
    fills at which it would need the whole block.
    """
    done = sorted((r for r in rows if r["settled"]), key=lambda r: r["orders"])
    failed = [r["orders"] for r in rows if not r["settled"]]
    out: dict[str, Any] = {
        "largest_settled": None,
        "smallest_not_settled": min(failed) if failed else None,
        "settle_fills_per_block_fit": None,
    }
    if done:
        top = done[-1]
        out["largest_settled"] = {
            k: top[k] for k in ("orders", "commit_txs", "seconds_gate_to_committed", "settle_gas", "seconds_settle")
        }
    if len(done) >= 3:
        fit = np.polyfit([r["orders"] for r in done], [r["settle_gas"] for r in done], 2)
        roots = [z.real for z in np.roots(fit - np.array([0, 0, block_gas_limit])) if abs(z.imag) < 1e-9 and z.real > 0]
        out["settle_fills_per_block_fit"] = int(min(roots)) if roots else None
    return out


def markdown_table(doc: dict[str, Any]) -> str:
    lines = [
        "| orders | commit txs | commit gas | commit gas / fill | largest commit tx | settle gas (share of block) "
        "| settle gas / fill | gate → committed (s) | of which indexing (s) | settle (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["results"]:
        settle = (
            f"{r['settle_gas']:,} ({r['settle_share_of_block']:.0%}) | {r['settle_gas_per_fill']:,}"
            if r["settled"]
            else "failed | –"
        )
        lines.append(
            f"| {r['orders']:,} | {r['commit_txs']} | {r['commit_gas']:,} | {r['commit_gas_per_fill']:,} "
            f"| {r['commit_gas_largest_tx']:,} | {settle} | {r['seconds_gate_to_committed']:.2f} "
            f"| {r['seconds_index']:.2f} | {r['seconds_settle']:.2f} |"
        )
    return "\n".join(lines)


def configure_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="orders per interval, comma separated (%(default)s)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of keys and books (default %(default)s)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="results JSON (default bench/results/clearing_e2e.json)"
    )
    parser.add_argument(
        "--block-gas-limit", type=int, default=30_000_000, help="Ganache's block gas limit (default %(default)s)"
    )
    defaults = MarketSettings()
    parser.add_argument(
        "--commit-gas-fraction",
        type=float,
        default=defaults.commit_gas_fraction,
        help="largest share of the block gas limit one commit transaction may use (default %(default)s)",
    )
    parser.add_argument(
        "--commit-chunk",
        type=int,
        default=defaults.commit_chunk,
        help="most fills per commit transaction (default %(default)s)",
    )
    parser.add_argument(
        "--mechanism",
        choices=("uniform", "pay-as-bid"),
        default="uniform",
        help="clearing mechanism (default %(default)s)",
    )
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")


def run_bench(args: argparse.Namespace) -> int:
    try:
        sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    except ValueError:
        print(f"bench e2e: error: --sizes must be integers, got {args.sizes!r}", file=sys.stderr)
        return 2
    # A terminated run still stops the Ganache it started (context managers run on SystemExit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not sizes or min(sizes) < 2:
        print("bench e2e: error: --sizes must be at least 2", file=sys.stderr)
        return 2
    try:
        cfg = MarketSettings(
            interval_s=INTERVAL_S,
            mechanism=args.mechanism,
            commit_chunk=args.commit_chunk,
            commit_gas_fraction=args.commit_gas_fraction,
        )
    except ValidationError as exc:
        print(f"bench e2e: error: {'; '.join(error_lines(exc))}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    machine = _machine()
    try:
        doc = measure(
            sizes,
            args.seed,
            cfg,
            args.block_gas_limit,
            log=lambda s: print(s, file=sys.stderr, flush=True),
        )
    except BenchError as exc:
        print(f"bench e2e: error: {exc}", file=sys.stderr)
        return 1
    argv = sys.argv[1:]
    command = (
        "gridswarm " + " ".join(argv)
        if argv[:2] == ["bench", "e2e"]
        else "python scripts/bench_e2e_clearing.py " + " ".join(argv)
    )
    result = {
        "benchmark": "clearing end to end on Ganache: gate closure -> fills committed -> settled",
        "generated_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "command": command.strip(),
        "git_commit": _git_commit(),
        "machine": {**machine, "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "chain": f"{doc['client']} (hardfork shanghai, instamine eager, block gas limit {args.block_gas_limit:,})",
        "compiler": f"solc {SOLC_VERSION}, evm {EVM_VERSION}, optimizer 200 runs",
        "setup": {
            "seed": args.seed,
            "mechanism": args.mechanism,
            "orders_per_participant": ORDERS_PER_PARTICIPANT,
            "book": "each participant one side; qty 100..5000 Wh; bids ~ N(260, 60), offers ~ N(240, 60) base "
            "units per Wh; posted in shuffled order",
            "commit_chunk": cfg.commit_chunk,
            "commit_gas_fraction": cfg.commit_gas_fraction,
            "readings": "every participant with an order signs one (EIP-712) and sends it to the hub; one "
            "seller in ten delivers 90 %; settle submits the readings of sellers with a fill (readings_settled)",
            "timed": "seconds_gate_to_committed = MarketLoop.clear_and_commit after the closeInterval receipt: "
            "indexing the interval's events (seconds_index), clearing, storing, and estimating, sending and "
            "mining every commit transaction; seconds_engine re-runs the engine alone on the same book; "
            "seconds_settle = MarketLoop.settle (one transaction, then indexing its events)",
        },
        "results": doc["rows"],
        "summary": summary(doc["rows"], args.block_gas_limit),
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    write_results(args.out, result)
    if args.markdown:
        print(markdown_table(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(prog="bench_e2e_clearing", description=(__doc__ or "").split("\n\n")[0])
    configure_bench(parser)
    return run_bench(parser.parse_args(argv))
