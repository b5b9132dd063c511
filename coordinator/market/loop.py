"""The market loop: drives each delivery interval through its lifecycle.

For interval *k* with delivery window ``[start, end)`` (``k = start // interval_s``):

=========================  ===================================================
``start - interval_s``     open *k* on chain, tell agents (signed ``interval``)
``start - gate_lead_s``    close the gate, index the orders, clear them,
                           commit the fills (in chunks under the gas limit),
                           send each agent its signed ``dispatch``
``end``                    wait for signed meter readings (up to ``meter_wait_s``)
then                       settle on chain with the readings that arrived
=========================  ===================================================

Intervals overlap (k+1 opens while k delivers); each runs as its own task. Each step starts
from the interval's state read back from the chain (``coordinator/market/lifecycle.py``), so a
restarted coordinator resumes every unfinished interval wherever it stopped. Chain calls are
blocking web3 calls, so they run in worker threads and never stall the agents' links.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from hexbytes import HexBytes

from coordinator.hub import Hub
from coordinator.indexer import Indexer
from coordinator.market.clearing import ClearingResult, Network, Order, clear
from coordinator.market.commit_plan import PlanOrder, chunk_end, plan, readings_for
from coordinator.market.files import read_zones
from coordinator.market.lifecycle import (
    ACTIVE_STAGES,
    CLOSED,
    OPEN,
    ChainState,
    Step,
    Times,
    backoff_s,
    first_new_interval,
    next_step,
)
from coordinator.settings import MarketSettings
from coordinator.store import Store
from gridswarm.chain import ContractRevert, Deployment, TxSender, chain_time, compact_signature
from gridswarm.clock import Clock

logger = logging.getLogger(__name__)

# Gas per committed fill assumed for the first chunk, so that it errs small: below it only at
# one or two fills, where the interval's fixed cost dominates (bench/results/gas.json: 72,098 per
# fill at 2 fills with the price commit, 5,998 at 100). Later chunks use what the previous used.
COMMIT_PRIOR_GAS_PER_FILL = 64_000
OPERATOR_GAS_SHARE = 0.9  # gas limit of the operator's other transactions, share of the block's
COMMIT_GAS_MARGIN = 0.1  # chunks aim at the commit budget less this share
SETTLE_RETRY_S = 1.0  # pause before settling again when a traded owner's reading is missing
VOID_POLL_S = 1.0  # wall seconds between reads of an interval left to lapse


class MarketLoop:
    def __init__(
        self,
        cfg: MarketSettings,
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
        self.failed: dict[int, str] = {}  # intervals that ended without settling, and why
        self.errors: dict[int, str] = {}  # the last failed step of intervals still being driven
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._announced: set[int] = set()
        self._block_gas_limit: int | None = None  # read once: the node's limit does not change
        self.network: Network | None = read_zones(str(cfg.network_file)) if cfg.network_file else None

    # ------------------------------------------------------------------ driver

    async def run(self) -> None:
        """Resume every interval left unfinished, then open new ones on the schedule.

        Every interval runs as its own supervised task through :meth:`run_interval`, which
        reads the interval's state back from the chain before each step (see
        ``coordinator/market/lifecycle.py``), so a restart continues where the last process
        stopped. ``intervals`` counts every interval this coordinator's store has planned.
        """
        await self._wait_for_agents()
        await self._retry("index", lambda: asyncio.to_thread(self.indexer.sync))
        planned = self.store.lifecycle_rows()
        final = {int(r["interval"]) for r in planned if r["stage"] not in ACTIVE_STAGES}
        resume = sorted(
            {int(r["interval"]) for r in planned if r["stage"] in ACTIVE_STAGES}
            | (set(self.store.chain_unsettled()) - final)  # opened on chain, lost from our own records
        )
        for k in resume:
            logger.info("resuming interval %d (%s)", k, (self.store.lifecycle(k) or {}).get("stage", "on chain"))
            self._start(k)
        n = len(planned)
        last = max((int(r["interval"]) for r in planned), default=None)
        k = first_new_interval(self.clock.now(), self.cfg.interval_s, self.cfg.gate_lead_s, last)
        try:
            while self.cfg.intervals is None or n < self.cfg.intervals:
                times = self._times(k)
                await self.clock.sleep_until(times.opens)
                if k not in self._tasks:
                    self._plan(k)
                    self._start(k)
                    n += 1
                k += 1
            while self._tasks:
                await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)
        finally:
            for k, t in list(self._tasks.items()):
                if not t.done():
                    stage = (self.store.lifecycle(k) or {}).get("stage", "?")
                    logger.info("stopping: interval %d handed over at stage %s (resumed on next start)", k, stage)
                    t.cancel()
            self.done.set()

    def _times(self, k: int) -> Times:
        return Times(k, self.cfg.interval_s, self.cfg.gate_lead_s)

    def _plan(self, k: int) -> None:
        t = self._times(k)
        self.store.set_stage(
            k, "pending", delivery_start=t.start, delivery_end=t.end, gate_close=t.gate, dispatched=0,
            updated=self.clock.now(), error="",
        )

    def _start(self, k: int) -> None:
        if k in self._tasks:
            return
        if self.store.lifecycle(k) is None:
            self._plan(k)
        task = asyncio.create_task(self.run_interval(k), name=f"interval-{k}")
        self._tasks[k] = task
        task.add_done_callback(lambda t, k=k: self._finished(k, t))

    def _finished(self, k: int, task: asyncio.Task[None]) -> None:
        self._tasks.pop(k, None)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # run_interval catches everything; this is a bug, made loud
            logger.error("interval %d task died: %r", k, exc, exc_info=exc)
            self.failed[k] = f"{exc.__class__.__name__}: {exc}"

    async def _wait_for_agents(self) -> None:
        if not self.cfg.expected_agents:
            return
        deadline = self.clock.monotonic() + self.cfg.agent_wait_s
        while len(self.hub.links) < self.cfg.expected_agents and self.clock.monotonic() < deadline:
            await self.clock.wait(0.1)
        logger.info("%d of %d expected agents connected", len(self.hub.links), self.cfg.expected_agents)

    async def chain_state(self, k: int) -> ChainState:
        def read() -> ChainState:
            status, live, committed, clear_by, settle_by, *_ = self.market.functions.intervalOf(k).call()
            lapsed = int(status) in (OPEN, CLOSED) and chain_time(self.operator.w3) > int(clear_by)
            return ChainState(int(status), int(live), int(committed), int(clear_by), int(settle_by), lapsed)

        return await asyncio.to_thread(read)

    async def run_interval(self, k: int) -> None:
        """Drive interval ``k`` to a final stage (settled, lapsed or skipped) from wherever the
        chain says it is. A failed step is retried with bounded back-off after reading the
        state again; the contract's deadlines bound how long (past them the interval lapses)."""
        times = self._times(k)
        attempt = 0
        while True:
            try:
                state = await self.chain_state(k)
                step = next_step(state, self.clock.now(), times)
                if step.final:
                    self._final(k, step, state)
                    return
                self.store.set_stage(k, state.name if state.status else "pending", updated=self.clock.now())
                await self._do(k, step, times, state)
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - read the state again and retry, bounded by the deadlines
                delay = backoff_s(attempt)
                attempt += 1
                message = f"{exc.__class__.__name__}: {exc}"
                self.errors[k] = message
                self.store.set_stage(k, (self.store.lifecycle(k) or {}).get("stage", "pending"), error=message[:500])
                if isinstance(exc, ContractRevert):
                    logger.error("interval %d: step failed: %s; retrying in %.1f s", k, exc, delay)
                else:
                    logger.warning("interval %d: step failed (%s); retrying in %.1f s", k, message, delay, exc_info=attempt == 1)
                await self.clock.wait(delay)

    def _final(self, k: int, step: Step, state: ChainState) -> None:
        self.store.set_stage(k, step.value, updated=self.clock.now())
        self.errors.pop(k, None)
        if step is Step.SETTLED:
            if k not in self.completed:
                self.completed.append(k)
            logger.info("interval %d settled", k)
        else:
            why = {
                Step.LAPSED: f"lapsed on chain at status {state.name}: its deadline passed; owners recover their locks",
                Step.SKIP: "not opened before its gate",
            }[step]
            self.failed[k] = why
            logger.warning("interval %d %s", k, why)

    async def _do(self, k: int, step: Step, times: Times, state: ChainState) -> None:
        if step is Step.OPEN:
            await self._tx(self.market.functions.openInterval(k))
            await self._announce(k, times)
            await self._fleet_interval(k)
        elif step is Step.CLOSE:
            if self.clock.now() < times.gate:
                await self._announce(k, times)
                await self.clock.sleep_until(times.gate)
            await self._tx(self.market.functions.closeInterval(k))
        elif step is Step.COMMIT:
            _, _, dispatch = await self.clear_and_commit(k)
            await self._send_dispatch(k, times, dispatch)
        elif step is Step.VOID:
            await self._void(k, state)
        elif step is Step.SETTLE:
            await self._deliver_and_settle(k, times)

    async def _fleet_interval(self, k: int) -> None:
        """Re-size and re-arm the fleet's services for the interval just opened (docs/fleet.md).
        The fleet re-arms on its own timer too, so a failure here is logged, not retried."""
        if self.hub.fleet is None:
            return
        try:
            await self.hub.fleet.on_interval(k)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the market must not stop for a grid-service hiccup
            logger.exception("interval %d: fleet re-arm failed", k)

    async def _announce(self, k: int, times: Times) -> None:
        if k in self._announced:
            return
        self._announced.add(k)
        await self.hub.broadcast("interval", self._notice(times))

    @staticmethod
    def _notice(times: Times) -> dict[str, Any]:
        return {
            "interval": times.interval,
            "delivery_start": times.start,
            "delivery_end": times.end,
            "gate_close": times.gate,
        }

    async def _send_dispatch(self, k: int, times: Times, dispatch: dict[str, dict[str, Any]]) -> None:
        self.store.save_dispatch(k, dispatch)
        await self._dispatch(k, times.start, times.end, dispatch)
        self.store.set_stage(k, "cleared", dispatched=1, updated=self.clock.now())

    async def _void(self, k: int, state: ChainState) -> None:
        """The gate closed but nothing was committed before delivery started: nobody was told to
        deliver, so no trade may stand. Without live orders the (empty) clearing is committed
        and the interval settles at once. Otherwise the contract's clearing rule fills every
        order in the money, so a crossed book cannot be committed empty; the interval is left
        to lapse at its clear deadline, after which every owner recovers its own locks in full.
        Until then this step only waits (the loop reads the chain again after it)."""
        if state.live_orders == 0:
            await self.clear_and_commit(k)
            self.store.set_stage(k, "cleared", dispatched=1, updated=self.clock.now())
            return
        row = self.store.lifecycle(k) or {}
        if not str(row.get("error") or "").startswith("not committed before delivery"):
            logger.warning("interval %d: gate closed but not committed before delivery; it lapses at its deadline", k)
            self.store.set_stage(k, "closed", updated=self.clock.now(),
                                 error="not committed before delivery: lapses at its clear deadline")
        await self.clock.wait(VOID_POLL_S)

    async def _deliver_and_settle(self, k: int, times: Times) -> None:
        await asyncio.to_thread(self.indexer.sync)
        chunks = await asyncio.to_thread(self.committed_chunks, k)  # as the chain holds them
        row = self.store.lifecycle(k) or {}
        if not row.get("dispatched") and self.clock.now() < times.end:
            await self._send_dispatch(k, times, self.store.fill_dispatch(k))
        # Both sides sign their own reading: every owner with a traded fill is waited for.
        traders = self.store.traders(k)
        if traders:
            await self.clock.sleep_until(times.end)
            await self._wait_for_readings(k, traders, times.end + self.cfg.meter_wait_s)
        self.store.set_stage(k, "cleared", updated=self.clock.now())
        await self.settle(k, chunks)

    async def obligations(self, address: str) -> None:
        """Send a (re)connected agent what it needs now: the notices of intervals still taking
        orders and its dispatch for intervals whose delivery has not ended."""
        now = self.clock.now()
        for row in self.store.lifecycle_rows(("open", "closed", "cleared")):
            k = int(row["interval"])
            times = self._times(k)
            if row["stage"] == "open" and now < times.gate:
                await self.hub.send(address, "interval", self._notice(times))
            elif row["stage"] == "cleared" and now < times.end and row.get("dispatched"):
                d = self.store.dispatch_of(k, address)
                if d is not None:
                    await self._dispatch(k, times.start, times.end, {address: d})

    async def _retry(self, what: str, fn: Callable[[], Awaitable[Any]], attempts: int = 8) -> Any:
        for attempt in range(attempts):
            try:
                return await fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - bounded retries, then the caller's handling
                if attempt == attempts - 1:
                    raise
                delay = backoff_s(attempt)
                logger.warning("%s failed (%s: %s); retrying in %.1f s", what, exc.__class__.__name__, exc, delay)
                await self.clock.wait(delay)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ steps

    async def _tx(self, call: Any) -> Any:
        return await asyncio.to_thread(self._send, call)

    def _send(self, call: Any, gas: int | None = None) -> Any:
        """Send one operator transaction: run once to name any revert, then sent with ``gas``,
        never estimated (gridswarm/chain.py, ``TxSender.transact``). By default the limit is
        ``OPERATOR_GAS_SHARE`` of the block's (only the gas used is paid) and the run uses the
        same limit, so a transaction that would run out of gas (a settlement too large for a
        block) is refused by name before it is sent, not mined to fail and burn that gas on
        every retry. A commit chunk passes its budget and is run without it: one that runs out
        is mined to fail, re-priced from its receipt and retried smaller (:meth:`_commit_fills`)."""
        if gas is not None:
            return self.operator.transact(call, gas=gas, precheck=True)
        cap = int(self._block_gas() * OPERATOR_GAS_SHARE)
        return self.operator.transact(call, gas=cap, precheck=True, precheck_gas=cap)

    def _block_gas(self) -> int:
        if self._block_gas_limit is None:
            self._block_gas_limit = int(self.operator.w3.eth.get_block("latest")["gasLimit"])
        return self._block_gas_limit

    async def clear_and_commit(
        self, k: int
    ) -> tuple[list[tuple[int, int, int]], ClearingResult, dict[str, dict[str, Any]]]:
        t0 = time.perf_counter()
        phases: dict[str, float] = {}  # wall seconds per step, for the log line below
        await asyncio.to_thread(self.indexer.sync)
        phases["index"] = time.perf_counter() - t0
        # Every live order, those a partial commit before a restart already filled included, so
        # the clearing (deterministic) gives the same fills again and only the missing are sent.
        rows = self.store.live_orders(k)
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
        phases["clear"] = time.perf_counter() - t0 - sum(phases.values())
        try:
            await self._tx(self.market.functions.commitPrices(k, cp.prices, cp.flows))
        except ContractRevert as exc:
            # Resuming after a restart between the price commit and the fills: the clearing is
            # deterministic, so the prices on chain are these; only the missing fills follow.
            if exc.name != "MarketPricesAlreadyCommitted":
                raise
            logger.info("interval %d: prices already committed; committing the missing fills", k)
        by_id = {oid: (oid, q, p) for oid, q, p in cp.fills}
        fills = [by_id[int(r["id"])] for r in rows]  # posting order, for the dispatch below
        # After a restart mid-commit, only the fills the chain has not taken yet are sent.
        phases["prices"] = time.perf_counter() - t0 - sum(phases.values())
        before = await asyncio.to_thread(self.committed_chunks, k)
        done = {oid for chunk in before for oid, _, _ in chunk}
        phases["read"] = time.perf_counter() - t0 - sum(phases.values())
        commit_txs, gas, new = await asyncio.to_thread(
            self._commit_fills, k, [f for f in cp.fills if f[0] not in done]
        )
        committed = before + new
        clear_seconds = time.perf_counter() - t0
        phases["fills"] = clear_seconds - sum(phases.values())
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
            "interval %d cleared: %d orders, price %s, volume %d Wh, %d commit tx(s), %.2f s (%s)",
            k,
            len(rows),
            result.price,
            result.volume_wh,
            len(commit_txs),
            clear_seconds,
            ", ".join(f"{name} {s:.2f}" for name, s in phases.items()),
        )
        return committed, result, dict(dispatch)

    def _commit_fills(
        self, k: int, fills: list[tuple[int, int, int]]
    ) -> tuple[list[str], int, list[list[tuple[int, int, int]]]]:
        """Commit ``fills`` in their order, split so that no transaction outgrows the block.

        Every commit transaction is one chunk: at most ``commit_chunk`` fills, whole owner groups
        (the contract refuses a chunk boundary inside one owner's fills on one side), sent with a
        gas limit of ``commit_gas_fraction`` of the latest block's gas limit (the budget). Chunk
        sizes come from gas per fill, fixed cost included so they err small: first from
        ``COMMIT_PRIOR_GAS_PER_FILL`` (a budget that may not hold the first owner group at that
        rate is checked by estimate, and refused if it is smaller than one fill), then from what
        the previous chunk used, filling the budget less ``COMMIT_GAS_MARGIN``. A chunk that still
        runs out of gas changes nothing; it is estimated, priced from the estimate and retried
        smaller, and any other revert is raised by name. Only the last transaction passes
        ``last``. Returns the hashes of the commit transactions, the gas they used (including
        any retried chunk's) and the chunks as committed (settlement replays them one by one).
        """
        block_gas = self._block_gas()
        budget = int(block_gas * self.cfg.commit_gas_fraction)
        n = len(fills)
        # No estimate in the usual case (each one took 0.3-1 s of Ganache's time under load,
        # inside the gate-to-delivery window): the first chunk is sized from a generous prior.
        # Only a budget that the prior says may not hold one owner group is checked by estimate,
        # so that a budget too small for even one fill is refused before anything is sent.
        per_fill = float(COMMIT_PRIOR_GAS_PER_FILL)
        first = fills[: chunk_end(fills, 0, 1)]
        if per_fill * max(1, len(first)) > budget * (1 - COMMIT_GAS_MARGIN):
            one = self._estimate_commit(k, first, len(first) == n) // max(1, len(first))
            if one > budget:
                raise ValueError(
                    f"interval {k}: committing one fill needs {one} gas, over the commit budget of {budget} "
                    f"({self.cfg.commit_gas_fraction} of the block gas limit {block_gas})"
                )
            per_fill = float(one)
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
                receipt = self._send(self.market.functions.commitFills(k, chunk, last), gas=budget)
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
        messages = []
        for address, d in dispatch.items():
            export_w = d["net_wh"] * 3600.0 / (end - start)
            body = {"interval": k, "start": start, "end": end, "export_w": export_w, "fills": d["fills"]}
            messages.append((address, "dispatch", body))
        # All links at once (coordinator/hub.py): one slow agent does not delay the others.
        for (address, _, _), sent in zip(messages, await self.hub.send_all(messages), strict=True):
            if not sent:
                logger.warning("interval %d: no link to %s for its dispatch", k, address)

    async def _wait_for_readings(self, k: int, participants: set[str], deadline: float) -> None:
        """Until every one of ``participants`` has a reading of ``k`` stored, or the clock reads
        ``deadline``: woken by the hub when readings are stored, no polling."""
        have: set[str] = set()
        while True:
            seen = self.hub.readings_stored.version
            have = self.store.reading_senders(k)
            if participants <= have:
                return
            if self.clock.now() >= deadline:
                break
            await self.hub.readings_stored.wait(seen, self.clock.sleep_until(deadline))
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
        orders = self.store.order_locks(k)

        def signed_readings() -> dict[str, Any]:
            return {
                r["participant"]: (
                    (r["participant"], k, int(r["exported_wh"]), int(r["imported_wh"])),
                    *compact_signature(r["signature"]),
                )
                for r in self.store.readings(k)
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
                    await self.clock.wait(SETTLE_RETRY_S)
                    signed = signed_readings()
                    continue
                raise
            gas += int(receipt["gasUsed"])
            txs.append("0x" + bytes(receipt["transactionHash"]).hex())
            c -= 1
        await asyncio.to_thread(self.indexer.sync)
        self.store.upsert_interval(k, settle_tx=txs[-1] if txs else None, gas_settle=gas)
        return receipt
