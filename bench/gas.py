"""Gas per market operation on Ganache (issue 3): ``gridswarm bench gas`` / ``scripts/bench_gas.py``.

Starts its own Ganache (shanghai, free port, deterministic accounts), deploys GridToken and
EnergyMarket exactly as ``gridswarm deploy`` compiles them (solc 0.8.28, optimizer 100 runs), and
measures ``gasUsed`` from receipts:

* single operations: deposit, withdraw, post bid / offer (first order of an account, which
  creates its order slot, and steady state, which reuses a slot of a settled order), cancel,
  open and close an interval;
* whole intervals of N fills (N/2 offers and N/2 bids from N distinct participants, each one
  order, everything traded at one uniform price, the signed readings of both sides submitted:
  sellers' export, buyers' import): the price commit, the fill commit (in chunks of
  ``--commit-chunk`` fills, like the market loop) and settlement (one transaction per commit
  chunk, last first), per fill and per traded pair (an offer fill and a bid fill).

Everything is deterministic (fixed accounts, ids, prices and signatures), so the numbers are
reproducible to the unit; ``bench/gas-snapshot.json`` keeps them and
``tests/bench/test_gas_snapshot.py`` fails when they drift. Writes
``bench/results/gas.json``. Gas is a count, not a timing: nothing here depends on the machine's
speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from web3 import Web3

from app.compile import EVM_VERSION, ROOT, SOLC_VERSION, compile_contracts, link_bytecode
from app.devnet import Ganache
from bench.info import machine, write_results
from gridswarm.chain import compact_signature, meter_typed_data

logger = logging.getLogger(__name__)

RESULTS = ROOT / "bench" / "results" / "gas.json"
SNAPSHOT = ROOT / "bench" / "gas-snapshot.json"
DEFAULT_SIZES = (1, 2, 10, 100, 1000)
SNAPSHOT_TOLERANCE = 0.005  # relative drift allowed before the snapshot test fails
TARGET_POST_ORDER = 60_000
TARGET_PER_FILL_AT_100 = 22_000
GAS_PRICE = 2 * 10**9  # Ganache post-London never mines gas price 0
BIG_GAS = 29_000_000
SMALL_GAS = 1_000_000
RATE = 20  # collateral per offered Wh
IMBALANCE_BUY, IMBALANCE_SELL = 20, 5  # per Wh short (seller) / unused (buyer)
CLEARING_PRICE = 100  # every fill's price (one market, no links)
ORDER_SLOTS = 16
FIRST_INTERVAL = 1_980_000  # realistic ids: 15-minute intervals since the epoch, mid-2026
TOKEN = 10**6


class BenchError(RuntimeError):
    """The benchmark could not run."""


@dataclass
class Chain:
    """A deployed market on a Ganache node, driven through its unlocked accounts."""

    w3: Web3
    token: Any
    market: Any
    admin: str
    operator: str
    participants: list[str]
    next_interval: int = FIRST_INTERVAL
    registered: set[str] = field(default_factory=set)

    def send(self, call: Any, sender: str, gas: int = SMALL_GAS) -> Any:
        tx_hash = call.transact({"from": sender, "gas": gas, "gasPrice": GAS_PRICE})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise BenchError(f"transaction {call.fn_name} from {sender} reverted")
        return receipt

    def gas(self, call: Any, sender: str, gas: int = SMALL_GAS) -> int:
        return int(self.send(call, sender, gas)["gasUsed"])

    def new_interval(self) -> int:
        k = self.next_interval
        self.next_interval += 1
        return k

    def onboard(self, accounts: list[str], deposit: int = 1_000 * TOKEN) -> None:
        """Register, fund and approve participants (skipping those already done)."""
        for a in accounts:
            if a in self.registered:
                continue
            self.send(self.market.functions.registerParticipant(a, Web3.keccak(text=a), 0), self.admin)
            self.send(self.token.functions.mint(a, 10 * deposit), self.admin)
            self.send(self.token.functions.approve(self.market.address, 2**256 - 1), a)
            self.send(self.market.functions.deposit(deposit), a)
            self.registered.add(a)

    def post(self, k: int, owner: str, side: int, qty: int, price: int) -> tuple[int, int, int]:
        """Post an order; returns (order id, lock, gas used)."""
        receipt = self.send(self.market.functions.postOrder(k, side, qty, price), owner)
        ev = self.market.events.OrderPosted().process_receipt(receipt)[0]["args"]
        return int(ev["orderId"]), int(ev["locked"]), int(receipt["gasUsed"])

    def sign_reading(self, participant: str, k: int, exported: int, imported: int) -> tuple[Any, bytes, bytes]:
        data = meter_typed_data(self.w3.eth.chain_id, self.market.address, participant, k, exported, imported)
        resp = self.w3.provider.make_request("eth_signTypedData_v4", [participant, data])
        if "result" not in resp:
            raise BenchError(f"the node could not sign a reading for {participant}: {resp.get('error')}")
        r, vs = compact_signature(resp["result"])
        return (participant, k, exported, imported), r, vs


@dataclass
class IntervalRun:
    fills: int
    traded_pairs: int
    commit_txs: int
    commit_gas: int
    settle_gas: int

    def row(self) -> dict[str, Any]:
        per_fill = (self.commit_gas + self.settle_gas) / self.fills
        return {
            "fills": self.fills,
            "traded_pairs": self.traded_pairs,
            "commit_txs": self.commit_txs,
            "commit_gas": self.commit_gas,
            "settle_gas": self.settle_gas,
            "commit_per_fill": round(self.commit_gas / self.fills),
            "settle_per_fill": round(self.settle_gas / self.fills),
            "commit_plus_settle_per_fill": round(per_fill),
            "per_traded_pair": round((self.commit_gas + self.settle_gas) / self.traded_pairs)
            if self.traded_pairs
            else None,
        }


def deploy(w3: Web3, participants: int) -> Chain:
    accounts = list(w3.eth.accounts)
    if len(accounts) < participants + 2:
        raise BenchError(f"the node has {len(accounts)} accounts, {participants + 2} needed")
    artifacts = compile_contracts()
    admin, operator = accounts[0], accounts[1]

    libraries: dict[str, str] = {}

    def create(name: str, *args: Any) -> Any:
        art = artifacts[name]
        factory = w3.eth.contract(abi=art["abi"], bytecode=link_bytecode(art, libraries))
        tx_hash = factory.constructor(*args).transact({"from": admin, "gas": 8_000_000, "gasPrice": GAS_PRICE})
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise BenchError(f"deploying {name} failed")
        return w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])

    token = create("GridToken", admin)
    for lib in ("MarketSettlement", "MarketClearing"):
        libraries[lib] = create(lib).address
    params = (RATE, IMBALANCE_BUY, IMBALANCE_SELL, 3600, 3600, admin, operator)
    market = create("EnergyMarket", token.address, admin, params, [], 86_400)
    return Chain(w3, token, market, admin, operator, accounts[2 : 2 + participants])


def _settle(chain: Chain, k: int, chunks: list[list[dict[str, Any]]], readings: dict[str, tuple[int, int]]) -> int:
    """Settles every chunk, last first, each with its owners' readings; returns the gas used."""
    gas = 0
    for c in range(len(chunks) - 1, -1, -1):
        fills = [(o["id"], o["fill"], CLEARING_PRICE, o["lock"]) for o in chunks[c]]
        owners = sorted({o["owner"] for o in chunks[c] if o["owner"] in readings}, key=lambda a: int(a, 16))
        signed = [chain.sign_reading(p, k, *readings[p]) for p in owners]
        gas += chain.gas(chain.market.functions.settle(k, c, fills, signed), chain.operator, BIG_GAS)
    return gas


def run_interval(chain: Chain, owners: list[str], commit_chunk: int) -> IntervalRun:
    """One interval with len(owners) fills: the first half offer, the rest bid, all traded."""
    n = len(owners)
    n_offers = (n + 1) // 2
    k = chain.new_interval()
    chain.send(chain.market.functions.openInterval(k), chain.operator)
    orders = []
    for i, owner in enumerate(owners):
        offer = i < n_offers
        pair = i if offer else i - n_offers
        qty = 1_000 + 10 * (pair % 7)  # offer i and bid i match one to one
        lone = offer and pair >= n - n_offers  # an offer without a bid (n odd) stays out of the money
        limit = CLEARING_PRICE + (50 if lone else -5) if offer else CLEARING_PRICE + 5
        oid, lock, _ = chain.post(k, owner, 1 if offer else 0, qty, limit)
        orders.append({"id": oid, "owner": owner, "offer": offer, "qty": qty, "lock": lock, "lone": lone})
    chain.send(chain.market.functions.closeInterval(k), chain.operator)
    price_gas = chain.gas(chain.market.functions.commitPrices(k, [(0, CLEARING_PRICE)], []), chain.operator)
    for o in orders:
        o["fill"] = 0 if o["lone"] else o["qty"]
    ordered = sorted(orders, key=lambda o: o["id"])
    chunks = [ordered[i : i + commit_chunk] for i in range(0, len(ordered), commit_chunk)]
    commit_gas = price_gas
    for i, chunk in enumerate(chunks):
        fills = [(o["id"], o["fill"], CLEARING_PRICE) for o in chunk]
        call = chain.market.functions.commitFills(k, fills, i == len(chunks) - 1)
        commit_gas += chain.gas(call, chain.operator, BIG_GAS)
    # Both sides sign: sellers export what they sold, buyers import what they bought.
    readings = {o["owner"]: ((o["fill"], 0) if o["offer"] else (0, o["fill"])) for o in orders if o["fill"]}
    settle_gas = _settle(chain, k, chunks, readings)
    traded = sum(1 for o in orders if o["offer"] and o["fill"] > 0)
    return IntervalRun(n, traded, len(chunks), commit_gas, settle_gas)


def _empty_interval(chain: Chain, posts: list[tuple[str, int]]) -> list[int]:
    """Open, post (owner, side) orders at the price, close, commit zero fills (every order is
    marginal), settle; returns posting gas."""
    k = chain.new_interval()
    chain.send(chain.market.functions.openInterval(k), chain.operator)
    gas, orders = [], []
    for owner, side in posts:
        oid, lock, g = chain.post(k, owner, side, 500, CLEARING_PRICE)
        gas.append(g)
        orders.append({"id": oid, "owner": owner, "fill": 0, "lock": lock})
    chain.send(chain.market.functions.closeInterval(k), chain.operator)
    chain.send(chain.market.functions.commitPrices(k, [(0, CLEARING_PRICE)], []), chain.operator)
    ordered = sorted(orders, key=lambda o: o["id"])
    fills = [(o["id"], 0, CLEARING_PRICE) for o in ordered]
    chain.send(chain.market.functions.commitFills(k, fills, True), chain.operator)
    _settle(chain, k, [ordered], {})
    return gas


def measure_operations(chain: Chain) -> dict[str, int]:
    """Single operations by two dedicated participants, from a fresh account to steady state."""
    seller, buyer = chain.participants[0], chain.participants[1]
    chain.onboard([seller, buyer])
    ops: dict[str, int] = {}
    ops["deposit"] = chain.gas(chain.market.functions.deposit(5 * TOKEN), buyer)
    ops["withdraw"] = chain.gas(chain.market.functions.withdraw(5 * TOKEN), buyer)
    # Orders 0..ORDER_SLOTS-1 of each account create its order slots; the next ones reuse them.
    first = _empty_interval(chain, [(buyer, 0), (seller, 1)])
    ops["post_bid_first"], ops["post_offer_first"] = first
    for _ in range(ORDER_SLOTS - 1):
        _empty_interval(chain, [(buyer, 0), (seller, 1)])
    k = chain.new_interval()
    ops["open_interval"] = chain.gas(chain.market.functions.openInterval(k), chain.operator)
    _, _, ops["post_bid"] = chain.post(k, buyer, 0, 500, CLEARING_PRICE)
    _, _, ops["post_offer"] = chain.post(k, seller, 1, 500, CLEARING_PRICE)
    oid, _, _ = chain.post(k, buyer, 0, 400, CLEARING_PRICE)
    ops["cancel"] = chain.gas(chain.market.functions.cancelOrder(oid), buyer)
    ops["close_interval"] = chain.gas(chain.market.functions.closeInterval(k), chain.operator)
    return ops


def measure(sizes: list[int], commit_chunk: int = 300, progress: bool = False) -> dict[str, Any]:
    """Run the whole measurement on a fresh Ganache; returns the results document."""
    biggest = max(sizes) if sizes else 0
    needed = 2 + biggest
    with Ganache(accounts=needed + 2, block_gas_limit=30_000_000) as node:
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 120}))
        chain = deploy(w3, needed)
        ops = measure_operations(chain)
        if progress:
            print(f"operations: {ops}", flush=True)
        rows = []
        for n in sorted(sizes):
            owners = chain.participants[2 : 2 + n]
            t0 = time.monotonic()
            chain.onboard(owners)
            run = run_interval(chain, owners, commit_chunk)
            rows.append(run.row())
            if progress:
                print(f"{n:>5} fills: {rows[-1]}  ({time.monotonic() - t0:.0f} s)", flush=True)
        client = w3.client_version
    return {"operations": ops, "intervals": rows, "client": client}


def snapshot_of(doc: dict[str, Any]) -> dict[str, int]:
    """The flat, deterministic numbers the snapshot keeps."""
    flat = {f"op.{k}": int(v) for k, v in doc["operations"].items()}
    for r in doc["intervals"]:
        flat[f"commit.{r['fills']}"] = int(r["commit_gas"])
        flat[f"settle.{r['fills']}"] = int(r["settle_gas"])
    return dict(sorted(flat.items()))


def compare(current: dict[str, int], snapshot: dict[str, int], tolerance: float = SNAPSHOT_TOLERANCE) -> list[str]:
    """Keys present in both whose values differ by more than ``tolerance`` (relative)."""
    problems = []
    for key, now in current.items():
        if key not in snapshot:
            continue
        before = snapshot[key]
        if abs(now - before) > tolerance * max(before, 1):
            problems.append(f"{key}: {before} -> {now} ({(now - before) / max(before, 1):+.2%})")
    return problems


def _machine() -> dict[str, Any]:
    return machine()


def results_document(doc: dict[str, Any], command: str) -> dict[str, Any]:
    ops = doc["operations"]
    at_100 = next((r for r in doc["intervals"] if r["fills"] == 100), None)
    post_worst = max(ops["post_bid_first"], ops["post_offer_first"], ops["post_bid"], ops["post_offer"])
    return {
        "benchmark": "contract gas per operation",
        "generated_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "command": command,
        "machine": _machine(),
        "chain": doc["client"] + " (hardfork shanghai)",
        "compiler": f"solc {SOLC_VERSION}, evm {EVM_VERSION}, optimizer 100 runs",
        "setup": {
            "collateral_rate": RATE,
            "imbalance_buy": IMBALANCE_BUY,
            "imbalance_sell": IMBALANCE_SELL,
            "clearing_price": CLEARING_PRICE,
            "orders_per_participant": 1,
            "interval": "N fills = N distinct participants, first half offers, second half bids, "
            "matched one to one at one price; the price commit counts as commit gas; both sides' "
            "signed readings submitted (sellers' export, buyers' import), full delivery",
        },
        "operations": ops,
        "intervals": doc["intervals"],
        "targets": {
            "post_order_max_gas": TARGET_POST_ORDER,
            "post_order_worst_measured": post_worst,
            "post_order_met": post_worst <= TARGET_POST_ORDER,
            "commit_plus_settle_per_fill_at_100_max_gas": TARGET_PER_FILL_AT_100,
            "commit_plus_settle_per_fill_at_100_measured": at_100["commit_plus_settle_per_fill"] if at_100 else None,
            "commit_plus_settle_per_fill_at_100_met": (
                at_100["commit_plus_settle_per_fill"] <= TARGET_PER_FILL_AT_100 if at_100 else None
            ),
        },
        "reference_points": {
            "cow_protocol_settlement_per_order": 66_000,
            "dex_top_per_matched_pair": 60_000,
            "one_transaction_per_trade": 97_000,
        },
    }


def markdown(doc: dict[str, Any]) -> str:
    ops = doc["operations"]
    lines = ["| operation | gas |", "|---|---:|"]
    lines += [f"| {k.replace('_', ' ')} | {v:,} |" for k, v in ops.items()]
    lines += [
        "",
        "| fills / interval | commit txs | commit per fill | settle per fill | commit + settle per fill "
        "| per traded pair |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["intervals"]:
        pair = f"{r['per_traded_pair']:,}" if r["per_traded_pair"] else "–"
        lines.append(
            f"| {r['fills']:,} | {r['commit_txs']} | {r['commit_per_fill']:,} | {r['settle_per_fill']:,} "
            f"| {r['commit_plus_settle_per_fill']:,} | {pair} |"
        )
    return "\n".join(lines)


def configure_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in DEFAULT_SIZES),
        help="fills per interval to measure, comma separated (default %(default)s)",
    )
    parser.add_argument("--commit-chunk", type=int, default=300, help="fills per commit transaction (default 300)")
    parser.add_argument("--out", default=str(RESULTS), help="results JSON (default bench/results/gas.json)")
    parser.add_argument(
        "--update-snapshot",
        action="store_true",
        help="also rewrite bench/gas-snapshot.json (do this only when a gas change is intended)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")


def run_bench(args: argparse.Namespace) -> int:
    try:
        sizes = sorted({int(s) for s in str(args.sizes).split(",") if s.strip()})
    except ValueError:
        print(f"gridswarm bench gas: error: --sizes must be integers, got {args.sizes!r}", file=sys.stderr)
        return 2
    if not sizes or min(sizes) < 1:
        print("gridswarm bench gas: error: --sizes must be positive", file=sys.stderr)
        return 2
    if args.commit_chunk < 1:
        print("gridswarm bench gas: error: --commit-chunk must be positive", file=sys.stderr)
        return 2
    try:
        doc = measure(sizes, args.commit_chunk, progress=True)
    except BenchError as exc:
        print(f"gridswarm bench gas: error: {exc}", file=sys.stderr)
        return 2
    command = "gridswarm bench gas " + " ".join(sys.argv[3:]) if sys.argv[1:2] == ["bench"] else " ".join(sys.argv)
    result = results_document(doc, command.strip())
    write_results(args.out, result)
    current = snapshot_of(doc)
    if args.update_snapshot:
        SNAPSHOT.write_text(
            json.dumps(
                {
                    "note": "Gas per operation on Ganache (gridswarm bench gas). Changes only on purpose: "
                    "rerun with --update-snapshot and commit together with the contract change.",
                    "tolerance": SNAPSHOT_TOLERANCE,
                    "gas": current,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {SNAPSHOT}")
    elif SNAPSHOT.exists():
        drift = compare(current, json.loads(SNAPSHOT.read_text())["gas"])
        for line in drift:
            print(f"drift against {SNAPSHOT.name}: {line}")
    if args.markdown:
        print(markdown(result))
    t = result["targets"]
    print(
        f"post order worst {t['post_order_worst_measured']:,} (target <= {TARGET_POST_ORDER:,}); "
        f"commit+settle per fill at 100: {t['commit_plus_settle_per_fill_at_100_measured']} "
        f"(target <= {TARGET_PER_FILL_AT_100:,})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(prog="bench_gas", description=__doc__.split("\n\n")[0])
    configure_bench(parser)
    return run_bench(parser.parse_args(argv))
