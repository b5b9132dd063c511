"""A coordinator stopped at any stage of an interval resumes it from the chain.

Each test runs the real market loop against Ganache on a manual clock, stops it (its tasks
cancelled, as a killed process leaves them) at one lifecycle stage, then starts a NEW loop over
the same SQLite store, which must drive the interval to settlement: no order or fill doubled,
every lock released, value conserved. (Killing a real coordinator process with SIGKILL is in
tests/system/test_faults.py.)
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.devnet import Ganache, free_port
from coordinator.market.lifecycle import ChainState, Step, Times, first_new_interval, next_step
from coordinator.market.loop import MarketLoop
from coordinator.settings import MarketSettings
from gridswarm.clock import ManualClock
from tests.conftest import Market, deploy_fresh
from tests.coordinator.loop_support import build_loop, store_readings
from tests.support.waiting import wait_until_async as _until

I = 900.0
GATE = 300.0

# ------------------------------------------------------------------ the pure state machine


def test_next_step_covers_every_chain_status() -> None:
    t = Times(100, I, GATE)
    assert next_step(ChainState(0), t.opens, t) is Step.OPEN
    assert next_step(ChainState(0), t.gate, t) is Step.SKIP
    assert next_step(ChainState(1), t.opens, t) is Step.CLOSE
    assert next_step(ChainState(1, lapsed=True), t.opens, t) is Step.LAPSED
    assert next_step(ChainState(2), t.gate, t) is Step.COMMIT
    assert next_step(ChainState(2), t.start, t) is Step.VOID
    assert next_step(ChainState(2, live_orders=4, committed=2), t.start, t) is Step.COMMIT
    assert next_step(ChainState(3), t.end + 10_000, t) is Step.SETTLE
    assert next_step(ChainState(3, lapsed=True), t.end, t) is Step.LAPSED
    assert next_step(ChainState(4, lapsed=True), t.end, t) is Step.SETTLED
    with pytest.raises(ValueError):
        next_step(ChainState(9), t.start, t)


def test_first_new_interval_skips_nothing_that_can_still_trade() -> None:
    assert first_new_interval(100 * I + 1, I, GATE, None) == 102  # fresh: the interval after next
    # restart early in interval 100 after planning up to 100: 101 can still trade (gate at 100*I + 600)
    assert first_new_interval(100 * I + 10, I, GATE, 100) == 101
    # restart too close to 101's gate: it gets 102
    assert first_new_interval(100 * I + 500, I, GATE, 100) == 102
    # never goes back before what was planned
    assert first_new_interval(100 * I + 10, I, GATE, 105) == 106


# ------------------------------------------------------------------ against the chain


class Rig:
    def __init__(self, m: Market, db: Path, clock: ManualClock) -> None:
        self.m = m
        self.db = db
        self.clock = clock
        self.cfg = MarketSettings(interval_s=I, gate_lead_s=GATE, meter_wait_s=60.0)

    def loop(self) -> MarketLoop:
        """A fresh coordinator (new store connection, new indexer) over the same database."""
        return build_loop(self.m, self.cfg, self.clock, self.db)

    def status(self, k: int) -> int:
        return int(self.m.market.functions.intervalOf(k).call()[0])

    def committed(self, k: int) -> int:
        return int(self.m.market.functions.intervalOf(k).call()[2])

    def post(self, k: int) -> None:
        seller, buyer = self.m.participants[0], self.m.participants[1]
        self.m.sender(seller.account).transact(self.m.market.functions.postOrder(k, 1, 500, 100))
        self.m.sender(buyer.account).transact(self.m.market.functions.postOrder(k, 0, 400, 150))

    def meter(self, loop: MarketLoop, k: int, exported: int) -> None:
        """Both sides sign their own reading (the seller its export, the buyer its import of
        the same energy), as the agents do; the coordinator holds them for settlement."""
        seller, buyer = self.m.participants[0].account, self.m.participants[1].account
        store_readings(loop, self.m, k, {seller: (exported, 0), buyer: (0, exported)})

    def conserved(self) -> None:
        self.m.assert_conserved_and_unlocked()


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def _dispatched(loop: MarketLoop, k: int) -> bool:
    return (loop.store.lifecycle(k) or {}).get("dispatched") == 1


async def _drive_to_settled(rig: Rig, loop: MarketLoop, k: int) -> None:
    times = Times(k, I, GATE)
    task = asyncio.create_task(loop.run_interval(k))
    rig.clock.set(max(rig.clock.now(), times.gate))
    # committed and dispatched before delivery starts (else it would be left to lapse)
    await _until(lambda: task.done() or (rig.status(k) == 3 and _dispatched(loop, k)), "cleared and dispatched")
    rig.clock.set(max(rig.clock.now(), times.start))
    rig.clock.set(max(rig.clock.now(), times.end))
    rig.meter(loop, k, 380)
    await asyncio.wait_for(task, 60)
    assert rig.status(k) == 4
    assert k in loop.completed


STAGES = ["open", "closed", "committing", "cleared-before-dispatch", "delivering"]


@pytest.mark.parametrize("stage", STAGES)
def test_restart_at_each_stage_settles_the_interval(stage: str, tmp_path: Path, market: Market) -> None:
    k = 2_000_000 + STAGES.index(stage)
    clock = ManualClock(Times(k, I, GATE).opens)
    rig = Rig(market, tmp_path / "coordinator.sqlite", clock)

    async def scenario() -> None:
        first = rig.loop()
        first._plan(k)
        task = asyncio.create_task(first.run_interval(k))
        await _until(lambda: rig.status(k) == 1, "interval opened")
        rig.post(k)
        if stage != "open":
            clock.set(Times(k, I, GATE).gate)
            want = 2 if stage in ("closed", "committing") else 3
            if stage == "committing":
                # one fill per commit transaction, and the process dies after the first
                first.cfg = first.cfg.model_copy(update={"commit_chunk": 1})
                real_transact = first.operator.transact

                def one_then_die(call: Any, gas: int | None = None, **kw: Any) -> Any:
                    if call.fn_name == "commitFills" and rig.committed(k) >= 1:
                        raise RuntimeError("killed between commit chunks")
                    return real_transact(call, gas=gas, **kw)

                first.operator.transact = one_then_die  # type: ignore[method-assign]
            if stage == "closed":
                # stop the first coordinator between closing and committing
                real = first.clear_and_commit

                async def never(k_: int) -> object:
                    await asyncio.Event().wait()
                    return await real(k_)

                first.clear_and_commit = never  # type: ignore[method-assign]
            if stage == "cleared-before-dispatch":
                async def blocked(*a: object) -> None:
                    await asyncio.Event().wait()

                first._send_dispatch = blocked  # type: ignore[method-assign]
            await _until(lambda: rig.status(k) == want, f"chain status {want}")
            if stage == "committing":
                await _until(lambda: k in first.errors, "the commit stopped after one chunk")
                assert rig.committed(k) == 1
            if stage == "delivering":
                await _until(lambda: _dispatched(first, k), "dispatch sent")
                clock.set(Times(k, I, GATE).start + 100)
        await _stop(task)
        assert rig.status(k) != 4

        second = rig.loop()
        await _drive_to_settled(rig, second, k)
        fills = second.store.committed_fills(k)
        assert len(fills) == 2  # each order filled once, none doubled
        assert sorted(q for _, q, _ in fills) == [400, 400]
        assert second.store.lifecycle(k)["stage"] == "settled"
        assert second.store.lifecycle(k)["dispatched"] == 1
        row = second.store.one("select delivered_wh from intervals where id = ?", [k])
        assert row["delivered_wh"] == 380

    asyncio.run(scenario())
    rig.conserved()


def test_run_resumes_unfinished_and_opens_the_next(tmp_path: Path, market: Market) -> None:
    """``run()`` after a restart drives the interval left behind and still opens the next one."""
    k = 2_000_100
    clock = ManualClock(Times(k, I, GATE).opens)
    rig = Rig(market, tmp_path / "coordinator.sqlite", clock)

    async def scenario() -> None:
        first = rig.loop()
        first._plan(k)
        task = asyncio.create_task(first.run_interval(k))
        await _until(lambda: rig.status(k) == 1, "interval opened")
        rig.post(k)
        await _stop(task)

        second = rig.loop()
        second.cfg.intervals = 2  # k (planned before) and one new one
        runner = asyncio.create_task(second.run())
        times = Times(k, I, GATE)
        clock.set(times.gate)
        await _until(lambda: rig.status(k) == 3 and _dispatched(second, k), f"interval {k} cleared and dispatched")
        clock.set(times.start)  # the next interval opens
        await _until(lambda: rig.status(k + 1) == 1, f"interval {k + 1} opened")
        clock.set(times.end)
        rig.meter(second, k, 400)
        await _until(lambda: len(second.store.lifecycle_rows(("settled",))) == 2, "both intervals settled")
        await asyncio.wait_for(runner, 30)
        assert rig.status(k) == 4
        assert rig.status(k + 1) == 4  # the next interval was not skipped

    asyncio.run(scenario())
    rig.conserved()


# Clear and settle deadlines (chain seconds) for the lapse tests: long enough that no step of a
# test outlives them on a loaded machine; the tests move the chain's clock past them.
CLEAR_S = 120


def _left_to_lapse(loop: MarketLoop, k: int) -> bool:
    """The loop found the interval closed but not committed once delivery started, and waits
    for it to lapse (``MarketLoop._void``)."""
    return str((loop.store.lifecycle(k) or {}).get("error") or "").startswith("not committed before delivery")


def test_commit_too_late_lapses_the_interval(tmp_path: Path, ganache: object) -> None:
    """Closed but not committed before delivery started: nobody was told to deliver, so no trade
    may stand. A crossed book cannot be committed empty under the contract's clearing rule, so
    the loop commits nothing and the interval lapses at its clear deadline; every owner then
    recovers its own locks in full."""
    m = deploy_fresh(ganache, clear_timeout_s=CLEAR_S, settle_timeout_s=CLEAR_S)  # type: ignore[arg-type]
    k = 2_000_200
    clock = ManualClock(Times(k, I, GATE).opens)
    rig = Rig(m, tmp_path / "coordinator.sqlite", clock)

    async def scenario() -> None:
        loop = rig.loop()
        loop.operator.transact(loop.market.functions.openInterval(k))
        rig.post(k)
        loop.operator.transact(loop.market.functions.closeInterval(k))
        clock.set(Times(k, I, GATE).start + 10)
        task = asyncio.create_task(loop.run_interval(k))
        await _until(lambda: _left_to_lapse(loop, k), "the loop leaving the interval to lapse")
        m.advance_chain(CLEAR_S + 1)  # the chain's clear deadline passes
        await asyncio.wait_for(task, 60)
        assert rig.status(k) == 2  # still Closed on chain: nothing was committed
        assert loop.store.lifecycle(k)["stage"] == "lapsed"
        assert loop.store.committed_fills(k) == []

    asyncio.run(scenario())


def test_interval_past_its_deadline_lapses(tmp_path: Path, ganache: object) -> None:
    m = deploy_fresh(ganache, clear_timeout_s=CLEAR_S, settle_timeout_s=CLEAR_S)  # type: ignore[arg-type]
    k = 2_000_300
    clock = ManualClock(Times(k, I, GATE).opens)
    rig = Rig(m, tmp_path / "coordinator.sqlite", clock)

    async def scenario() -> None:
        loop = rig.loop()
        loop.operator.transact(loop.market.functions.openInterval(k))
        rig.post(k)
        m.advance_chain(CLEAR_S + 1)  # the chain's clear deadline passes
        await asyncio.wait_for(loop.run_interval(k), 30)
        assert loop.store.lifecycle(k)["stage"] == "lapsed"
        assert "lapsed" in loop.failed[k]

    asyncio.run(scenario())


async def _health(loop: MarketLoop) -> Any:
    """``/healthz`` over this loop's coordinator parts (the route function itself)."""
    from coordinator.api.routes.health import healthz

    coord = SimpleNamespace(
        w3=loop.operator.w3, deployment=loop.dep, store=loop.store, loop=loop, clock=loop.clock,
        hub=loop.hub, chain_id=loop.dep.chain_id, dead_tasks={},
    )  # fmt: skip
    return await healthz(coord)  # type: ignore[arg-type]


def test_chain_outage_longer_than_an_interval(tmp_path: Path) -> None:
    """The node stops for longer than an interval (simulated) and comes back on its database:
    the steps that failed meanwhile are retried, and the interval ends by rule: the commit could
    not happen before delivery, so it lapses at its clear deadline (owners then recover their
    locks in full)."""
    port = free_port()
    db = tmp_path / "chain"
    node = Ganache(port=port, db_path=db).start()
    try:
        m = deploy_fresh(node, clear_timeout_s=CLEAR_S, settle_timeout_s=CLEAR_S)
        k = 2_000_400
        clock = ManualClock(Times(k, I, GATE).opens)
        rig = Rig(m, tmp_path / "coordinator.sqlite", clock)

        async def scenario() -> None:
            nonlocal node
            loop = rig.loop()
            loop._plan(k)
            task = asyncio.create_task(loop.run_interval(k))
            await _until(lambda: rig.status(k) == 1, "interval opened")
            rig.post(k)
            node.stop()  # the chain goes away
            clock.set(Times(k, I, GATE).gate)
            await _until(lambda: k in loop.errors, "a failed step")
            clock.set(Times(k, I, GATE).end + 10)  # more than an interval passes while it is down
            loop.errors.pop(k)
            await _until(lambda: k in loop.errors, "a step failing again after the jump")
            assert not task.done()
            assert (loop.store.lifecycle(k) or {}).get("error")
            clock.set(Times(k, I, GATE).end + I + 70)  # past the end, the meter wait and an interval
            health = await _health(loop)
            assert health.status_code == 503
            problems = json.loads(health.body)["problems"]
            assert any(p.startswith("chain unreachable") for p in problems)
            assert any(p.startswith(f"interval {k} stuck past its schedule") for p in problems), problems
            node = Ganache(port=port, db_path=db).start()  # back, on its database
            await _until(lambda: _left_to_lapse(loop, k), "the loop closing the interval and leaving it to lapse", 120)
            m.advance_chain(CLEAR_S + 1)  # the chain's clear deadline passes
            await asyncio.wait_for(task, 90)
            assert rig.status(k) == 2  # closed, never committed: lapsed by the contract's rule
            assert loop.store.lifecycle(k)["stage"] == "lapsed"
            assert k not in loop.errors
            # each owner recovers its own locks, in full (value conservation below)
            posted = m.market.events.OrderPosted.get_logs(argument_filters={"interval": k}, from_block=m.dep.block)
            for p in m.participants[:2]:
                ids = [e["args"]["orderId"] for e in posted if e["args"]["owner"] == p.account.address]
                m.sender(p.account).transact(m.market.functions.recover(ids))

        asyncio.run(scenario())
        rig.conserved()
    finally:
        node.stop()
