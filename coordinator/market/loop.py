"""The market loop: drives each delivery interval through its lifecycle (DESIGN §3).

For interval *k* with delivery window ``[start, end)`` (``k = start // interval_s``):

=========================  ===================================================
``start - interval_s``     open *k* on chain, tell agents (signed ``interval``)
``start - gate_lead_s``    close the gate, index the orders, clear them,
                           commit the fills (in chunks under the gas limit),
                           send each agent its signed ``dispatch``
``end``                    wait for signed meter readings (up to ``meter_wait_s``)
then                       settle on chain with the readings that arrived
=========================  ===================================================

Intervals overlap (k+1 opens while k delivers); each runs as its own task. Chain calls are
blocking web3 calls, so they run in worker threads and never stall the agents' links.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hexbytes import HexBytes

from coordinator.hub import Hub
from coordinator.indexer import Indexer
from coordinator.market.cli import read_zones
from coordinator.market.clearing import ClearingResult, Network, Order, clear
from coordinator.market.commit_plan import PlanOrder, chunk_end, plan, readings_for
from coordinator.store import Store
from gridswarm.chain import ContractRevert, Deployment, TxSender, compact_signature
from gridswarm.clock import Clock

logger = logging.getLogger(__name__)

COMMIT_PROBE_FILLS = 16  # fills estimated to size the first commit chunk
COMMIT_GAS_MARGIN = 0.1  # chunks aim at the commit budget less this share
SETTLE_RETRY_S = 1.0  # pause before settling again when a traded owner's reading is missing


@dataclass
class MarketConfig:
    interval_s: float = 900.0
    gate_lead_s: float = 300.0
    meter_wait_s: float = 300.0
    intervals: int | None = None  # stop after this many; None runs forever
    expected_agents: int = 0  # wait for this many agent links before the first interval
    agent_wait_s: float = 120.0  # wall seconds to wait for them
    mechanism: str = "uniform"
    commit_chunk: int = 300  # at most this many fills per commit transaction (bounds calldata too)
    commit_gas_fraction: float = 0.5  # each commit transaction uses at most this share of the block gas limit
    zones: dict[int, str] = field(default_factory=dict)
    network_file: Path | None = None

    def __post_init__(self) -> None:
        if self.commit_chunk < 1 or not 0 < self.commit_gas_fraction <= 1:
            raise ValueError(
                f"commit_chunk must be >= 1 and commit_gas_fraction in (0, 1], "
                f"got {self.commit_chunk} and {self.commit_gas_fraction}"
            )


class MarketLoop:
    def __init__(
        self,
        cfg: MarketConfig,
        clock: Clock,
        store: Store,
        hub: Hub,
        indexer: Indexer,
        operator: TxSender,
        deployment: Deployment,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.store = store
        self.hub = hub
        self.indexer = indexer
        self.operator = operator
        self.dep = deployment
        self.market = deployment.market_contract(operator.w3)
        self.done = asyncio.Event()
        self.completed: list[int] = []
        self.failed: dict[int, str] = {}
        self.network: Network | None = read_zones(str(cfg.network_file)) if cfg.network_file else None

    # ------------------------------------------------------------------ driver

    async def run(self) -> None:
        await self._wait_for_agents()
        k = math.floor(self.clock.now() / self.cfg.interval_s) + 2
        tasks: list[asyncio.Task[None]] = []
        n = 0
        try:
            while self.cfg.intervals is None or n < self.cfg.intervals:
                start = k * self.cfg.interval_s
                await self.clock.sleep_until(start - self.cfg.interval_s)
                tasks.append(asyncio.create_task(self.run_interval(k), name=f"interval-{k}"))
                tasks = [t for t in tasks if not t.done()]
                k += 1
                n += 1
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            self.done.set()

    async def _wait_for_agents(self) -> None:
        if not self.cfg.expected_agents:
            return
        deadline = time.monotonic() + self.cfg.agent_wait_s
        while len(self.hub.links) < self.cfg.expected_agents and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        logger.info("%d of %d expected agents connected", len(self.hub.links), self.cfg.expected_agents)

    async def run_interval(self, k: int) -> None:
        start = k * self.cfg.interval_s
        end = start + self.cfg.interval_s
        gate = start - self.cfg.gate_lead_s
        try:
            await self._tx(self.market.functions.openInterval(k))
            self.store.upsert_interval(k, status="open", delivery_start=start, delivery_end=end)
            await self.hub.broadcast(
                "interval", {"interval": k, "delivery_start": start, "delivery_end": end, "gate_close": gate}
            )
            await self.clock.sleep_until(gate)
            await self._tx(self.market.functions.closeInterval(k))
            fills, result, dispatch = await self.clear_and_commit(k)
            await self._dispatch(k, start, end, dispatch)
            await self.clock.sleep_until(end)
            await self._wait_for_readings(k, set(dispatch), end + self.cfg.meter_wait_s)
            await self.settle(k, fills)
            self.completed.append(k)
            logger.info("interval %d settled", k)
        except ContractRevert as exc:
            self.failed[k] = str(exc)
            logger.error("interval %d failed: %s", k, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad interval must not stop the market
            self.failed[k] = f"{exc.__class__.__name__}: {exc}"
            logger.exception("interval %d failed", k)

    # ------------------------------------------------------------------ steps

    async def _tx(self, call: Any) -> Any:
        return await asyncio.to_thread(self.operator.transact, call)

    async def clear_and_commit(
        self, k: int
    ) -> tuple[list[tuple[int, int, int]], ClearingResult, dict[str, dict[str, Any]]]:
        t0 = time.perf_counter()
        await asyncio.to_thread(self.indexer.sync)
        rows = self.store.query(
            "select * from orders where interval = ? and status = 'open' order by block, log_index", [k]
        )
        # Chain order ids are 256-bit (interval, side, owner, nonce); the engine takes row numbers.
        orders = [
            Order(
                id=i,
                side=r["side"],
                qty_wh=int(r["qty_wh"]),
                price=int(r["price"]),
                zone=self.cfg.zones.get(int(r["zone"]), str(r["zone"])),
                seq=i,
            )
            for i, r in enumerate(rows)
        ]
        result = clear(orders, mechanism=self.cfg.mechanism, network=self.network)
        # What the contract accepts: one price per zone, one flow per registered link, one fill
        # per live order at its zone price (coordinator/market/commit_plan.py).
        chain_links = [tuple(int(x) for x in lk) for lk in self.market.functions.links().call()]
        cp = plan(
            [
                PlanOrder(int(r["id"]), r["side"], int(r["qty_wh"]), int(r["price"]), int(r["zone"]), r["owner"])
                for r in rows
            ],
            result,
            list(range(len(rows))),
            chain_links,  # type: ignore[arg-type]
            self.network,
            self.cfg.zones,
        )
        await self._tx(self.market.functions.commitPrices(k, cp.prices, cp.flows))
        by_id = {oid: (oid, q, p) for oid, q, p in cp.fills}
        fills = [by_id[int(r["id"])] for r in rows]  # posting order, for the dispatch below
        commit_txs, gas, committed = await asyncio.to_thread(self._commit_fills, k, cp.fills)
        clear_seconds = time.perf_counter() - t0
        self.store.upsert_interval(
            k,
            # One price per interval for the report: the uniform price, or with zones the
            # volume-weighted price sellers receive (the zone prices are stored beside it).
            clearing_price=result.price
            if result.price is not None or not result.volume_wh
            else result.sellers_receive // result.volume_wh,
            fee_revenue=result.fee_revenue,
            buyers_pay=result.buyers_pay,
            sellers_receive=result.sellers_receive,
            mechanism=self.cfg.mechanism,
            welfare=float(result.welfare),
            zone_prices={str(z): p for z, p in (result.zone_prices or {}).items()},
            flows={f"{a}->{b}": v for (a, b), v in (result.flows or {}).items()},
            commit_txs=commit_txs,
            gas_commit=gas,
            clear_seconds=clear_seconds,
            n_orders=len(rows),
        )
        dispatch: dict[str, dict[str, Any]] = defaultdict(lambda: {"net_wh": 0, "fills": []})
        for r, (oid, qty, price) in zip(rows, fills, strict=True):
            d = dispatch[r["owner"]]
            d["net_wh"] += qty if r["side"] == "offer" else -qty
            d["fills"].append({"order_id": oid, "side": r["side"], "qty_wh": qty, "price": price})
        logger.info(
            "interval %d cleared: %d orders, price %s, volume %d Wh, %d commit tx(s), %.2f s",
            k,
            len(rows),
            result.price,
            result.volume_wh,
            len(commit_txs),
            clear_seconds,
        )
        return committed, result, dict(dispatch)

    def _commit_fills(
        self, k: int, fills: list[tuple[int, int, int]]
    ) -> tuple[list[str], int, list[list[tuple[int, int, int]]]]:
        """Commit ``fills`` in their order, split so that no transaction outgrows the block.

        Every commit transaction is one chunk: at most ``commit_chunk`` fills, whole owner groups
        (the contract refuses a chunk boundary inside one owner's fills on one side), sent with a
        gas limit of ``commit_gas_fraction`` of the latest block's gas limit (the budget). Chunk
        sizes come from measured gas per fill, fixed cost included so they err small: first from
        estimates of the first fill and the first ``COMMIT_PROBE_FILLS`` (which name any revert
        before anything is sent, and refuse a budget smaller than one fill), then from what the
        previous chunk used, filling the budget less ``COMMIT_GAS_MARGIN``. A chunk that still
        runs out of gas changes nothing; it is estimated, priced from the estimate and retried
        smaller, and any other revert is raised by name. Only the last transaction passes
        ``last``. Returns the hashes of the commit transactions, the gas they used (including
        any retried chunk's) and the chunks as committed (settlement replays them one by one).
        """
        block_gas = int(self.operator.w3.eth.get_block("latest")["gasLimit"])
        budget = int(block_gas * self.cfg.commit_gas_fraction)
        n = len(fills)
        first = fills[: chunk_end(fills, 0, 1)]
        one = self._estimate_commit(k, first, len(first) == n) // max(1, len(first))
        if one > budget:
            raise ValueError(
                f"interval {k}: committing one fill needs {one} gas, over the commit budget of {budget} "
                f"({self.cfg.commit_gas_fraction} of the block gas limit {block_gas})"
            )
        probe = fills[: chunk_end(fills, 0, COMMIT_PROBE_FILLS)]
        per_fill = self._estimate_commit(k, probe, len(probe) == n) / len(probe) if len(probe) > 1 else one
        txs: list[str] = []
        chunks: list[list[tuple[int, int, int]]] = []
        gas = 0
        i = 0
        limit = self.cfg.commit_chunk  # fills per transaction; only ever lowered by a failed chunk
        while True:
            size = max(1, min(limit, int(budget * (1 - COMMIT_GAS_MARGIN) / per_fill)))
            chunk = fills[i : chunk_end(fills, i, size)]
            last = i + len(chunk) == n
            try:
                receipt = self.operator.transact(self.market.functions.commitFills(k, chunk, last), gas=budget)
            except ContractRevert as exc:
                if exc.name != "TransactionFailed":
                    raise
                failed = HexBytes(str(exc.values["tx"]))
                gas += int(self.operator.w3.eth.get_transaction_receipt(failed)["gasUsed"])
                needed = self._estimate_commit(k, chunk, last)  # raises any other revert by name
                if needed <= budget or chunk_end(fills, i, len(chunk) - 1) - i >= len(chunk):
                    raise
                logger.warning(
                    "interval %d: %d fills needed %d gas > %d; retrying smaller", k, len(chunk), needed, budget
                )
                per_fill = needed / len(chunk)
                limit = len(chunk) - 1
                continue
            txs.append("0x" + bytes(receipt["transactionHash"]).hex())
            chunks.append(chunk)
            used = int(receipt["gasUsed"])
            gas += used
            i += len(chunk)
            if last:
                return txs, gas, chunks
            per_fill = used / max(1, len(chunk))

    def _estimate_commit(self, k: int, chunk: list[tuple[int, int, int]], last: bool) -> int:
        call = self.market.functions.commitFills(k, chunk, last)
        try:
            return int(call.estimate_gas({"from": self.operator.address}))
        except Exception as exc:  # noqa: BLE001 - a revert found by the estimate is named like a sent one
            raise self.operator.decoder.map(exc) from exc

    async def _dispatch(self, k: int, start: float, end: float, dispatch: dict[str, dict[str, Any]]) -> None:
        for address, d in dispatch.items():
            export_w = d["net_wh"] * 3600.0 / (end - start)
            body = {"interval": k, "start": start, "end": end, "export_w": export_w, "fills": d["fills"]}
            if not await self.hub.send(address, "dispatch", body):
                logger.warning("interval %d: no link to %s for its dispatch", k, address)

    async def _wait_for_readings(self, k: int, participants: set[str], deadline: float) -> None:
        have: set[str] = set()  # the deadline may already have passed (a slow commit)
        while self.clock.now() < deadline:
            have = {r["participant"] for r in self.store.query("select participant from readings where interval = ?", [k])}
            if participants <= have:
                return
            await asyncio.sleep(0.05)
        logger.warning("interval %d: settling without readings from %s", k, sorted(participants - have))

    def committed_chunks(self, k: int) -> list[list[tuple[int, int, int]]]:
        """The commit chunks of ``k`` as the chain holds them (one ``FillsCommitted`` per chunk,
        in order): what :meth:`settle` needs after a restart."""
        logs = self.market.events.FillsCommitted().get_logs(
            from_block=self.dep.block, argument_filters={"interval": k}
        )
        logs = sorted(logs, key=lambda e: (e["blockNumber"], e["logIndex"]))
        return [
            [(int(f["orderId"]), int(f["qty"]), int(f["price"])) for f in e["args"]["fills"]] for e in logs
        ]

    async def settle(self, k: int, fills: list[list[tuple[int, int, int]]]) -> Any:
        """Settle ``k`` chunk by chunk, last chunk first (the contract's order), each with the
        signed readings of its owners -- sellers' export and buyers' import both count, and a
        missing reading counts as its owner's worst case (docs/contracts.md). Returns the last
        receipt."""
        orders = {int(r["id"]): r for r in self.store.query("select id, locked from orders where interval = ?", [k])}

        def signed_readings() -> dict[str, Any]:
            return {
                r["participant"]: (
                    (r["participant"], k, int(r["exported_wh"]), int(r["imported_wh"])),
                    *compact_signature(r["signature"]),
                )
                for r in self.store.query("select * from readings where interval = ?", [k])
            }

        signed = signed_readings()
        receipt = None
        gas = 0
        txs = []
        c = len(fills) - 1
        while c >= 0:
            chunk = fills[c]
            settlement = [(oid, qty, price, int(orders[oid]["locked"])) for oid, qty, price in chunk]
            try:
                receipt = await self._tx(self.market.functions.settle(k, c, settlement, readings_for(chunk, signed)))
            except ContractRevert as exc:
                # Resuming after a restart: continue where the chain says settlement stands.
                if exc.name == "MarketChunkNotNext" and int(exc.values["expected"]) < c:
                    c = int(exc.values["expected"])
                    continue
                if exc.name == "MarketIntervalAlreadySettled":
                    break
                if exc.name == "MarketReadingMissing":
                    # Before settleBy every traded owner's reading is needed: wait for late
                    # readings (after settleBy the contract settles without them).
                    logger.warning("interval %d: waiting for the reading of %s", k, exc.values.get("participant"))
                    await asyncio.sleep(SETTLE_RETRY_S)
                    signed = signed_readings()
                    continue
                raise
            gas += int(receipt["gasUsed"])
            txs.append("0x" + bytes(receipt["transactionHash"]).hex())
            c -= 1
        await asyncio.to_thread(self.indexer.sync)
        self.store.upsert_interval(k, settle_tx=txs[-1] if txs else None, gas_settle=gas)
        return receipt
