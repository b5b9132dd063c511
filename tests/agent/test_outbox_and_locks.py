"""The agent's outbox never blocks, and the agent recovers its own locks after a lapse."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from agent.runtime import AgentRuntime
from agent.store import EXPIRE_AFTER_S, AgentStore
from app.devnet import Ganache
from coordinator.service import create_app
from gridswarm.clock import ManualClock, ScaledClock
from gridswarm.messages import IntervalNotice
from tests.agent.test_runtime import ServerThread, agent_config
from tests.conftest import deploy_fresh
from tests.coordinator.conftest import write_settings
from tests.support.waiting import wait_until_async

# ------------------------------------------------------------------ the outbox rules


def test_a_backlog_of_one_kind_cannot_starve_another(tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "agent.sqlite")
    for i in range(400):  # far more acks than one batch holds (the failure once seen in the field)
        store.enqueue("ack", {"kind": "dispatch", "seq": i}, f"ack:{i}", 0.0)
    for i in range(300):
        store.enqueue("telemetry", {"record_id": i}, f"telemetry:{i}", 1.0)
    for k in range(3):
        store.enqueue("meter", {"interval": k}, f"meter:{k}", 2.0)
    batch = store.pending_fair(limit=200)
    kinds = [kind for _, kind, _ in batch]
    assert len(batch) == 200
    assert kinds[:3] == ["meter"] * 3  # meter readings go first
    assert kinds.count("telemetry") >= 50 and kinds.count("ack") >= 50
    # with no meter readings waiting, their share goes to the others
    only = AgentStore(tmp_path / "two.sqlite")
    for i in range(10):
        only.enqueue("telemetry", {"record_id": i}, f"telemetry:{i}", 1.0)
    assert len(only.pending_fair(limit=200)) == 10


def test_every_kind_expires_by_rule_and_the_outbox_is_bounded(tmp_path: Path, monkeypatch: object) -> None:
    import agent.store as agent_store

    store = AgentStore(tmp_path / "agent.sqlite")
    now = 1_800_000_000.0
    store.enqueue("telemetry", {"record_id": 1}, "telemetry:1", now - EXPIRE_AFTER_S["telemetry"] - 1)
    store.enqueue("ack", {"seq": 1}, "ack:1", now - EXPIRE_AFTER_S["ack"] - 1)
    store.enqueue("meter", {"interval": 1}, "meter:1", now - EXPIRE_AFTER_S["ack"] - 1)  # young for a meter
    store.enqueue("alarm", {"what": "x"}, "alarm:1", now - 2 * 86_400)
    assert store.expire(now) == 3
    counts = store.outbox_counts()
    assert counts["meter"] == {"pending": 1}
    assert counts["telemetry"] == {"expired": 1} and counts["ack"] == {"expired": 1}
    # finished records are deleted a day later
    store.expire(now + 2 * 86_400 - EXPIRE_AFTER_S["ack"])
    assert "ack" not in store.outbox_counts()
    # a bound on pending records: the oldest telemetry goes first, meter readings stay
    monkeypatch.setattr(agent_store, "MAX_PENDING", 10)  # type: ignore[attr-defined]
    for i in range(20):
        store.enqueue("telemetry", {"record_id": 100 + i}, f"telemetry:{100 + i}", now)
    store.expire(now)
    assert store.pending_count() == 10
    assert store.outbox_counts()["meter"].get("pending") == 1
    kept = [b["record_id"] for _, kind, b in store.pending_fair(100) if kind == "telemetry"]
    assert kept == list(range(111, 120))


def test_coordinator_acknowledges_ack_records(ganache: Ganache, tmp_path: Path) -> None:
    """An agent's ``ack`` records are acknowledged by the running coordinator and leave the outbox."""
    m = deploy_fresh(ganache, n_participants=2)
    settings = write_settings(tmp_path, m, run_market=False, index_poll_s=0.1, message_ttl_s=900.0)
    clock = ScaledClock(sim_start=1_800_000_000.0, speed=10.0)
    cfg = agent_config(tmp_path, m, 0, f"http://127.0.0.1:{settings.port}", message_ttl_s=900.0)
    rt = AgentRuntime(cfg, clock=clock)
    for i in range(250):  # more than one batch
        rt.store.enqueue("ack", {"kind": "dispatch", "seq": i, "interval": i, "ok": True, "reason": ""}, f"ack:{i}", clock.now())

    def pending_acks() -> int:
        return rt.store.outbox_counts().get("ack", {}).get("pending", 0)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run(stop))
        with ServerThread(create_app(settings, clock=clock), settings.port):
            await asyncio.wait_for(rt.connected.wait(), 20)
            await wait_until_async(lambda: not pending_acks(), "the outbox's acks acknowledged", poll_s=0.2)
            assert rt.store.outbox_counts()["ack"] == {"acked": 250}
            stop.set()
            await task

    asyncio.run(main())
    with sqlite3.connect(settings.db_path) as conn:
        stored = conn.execute("select count(*) from acks where sender = ?", (rt.address,)).fetchone()[0]
    assert stored == 250


# ------------------------------------------------------------------ lock recovery


def test_agent_recovers_its_lock_after_a_lapse_by_itself(ganache: Ganache, tmp_path: Path) -> None:
    deadline_s = 120  # of chain time; the test moves the chain's clock past it
    m = deploy_fresh(ganache, n_participants=2, clear_timeout_s=deadline_s, settle_timeout_s=deadline_s)
    clock = ManualClock(1_800_000_000.0)
    k = 2_000_500
    m.sender(m.operator).transact(m.market.functions.openInterval(k))
    cfg = agent_config(
        tmp_path, m, 0, "http://127.0.0.1:9", chain_check_s=0.2, trading={"role": "seller", "price_jitter": 0}
    )
    rt = AgentRuntime(cfg, clock=clock)
    notice = IntervalNotice(
        interval=k, delivery_start=clock.now() + 900, delivery_end=clock.now() + 1800, gate_close=clock.now() + 600
    )
    me = m.participants[0].account.address

    def locked() -> int:
        return int(m.market.functions.accountOf(me).call()[1])

    async def main() -> None:
        await rt.site.connect()
        clock.advance(1)
        await rt.site.tick()
        await rt.trade(notice)
        assert rt.store.order_for(k) is not None
        assert locked() > 0
        m.advance_chain(deadline_s + 1)  # the operator never closes the interval: it lapses on chain
        clock.advance(1000)  # delivery has started
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run(stop))  # the running agent's own task recovers it
        try:
            await wait_until_async(
                lambda: not locked() and not rt.store.open_orders(),
                "the agent recovering its lock and marking its order finished",
                poll_s=0.2,
            )
        finally:
            stop.set()
            await task

    asyncio.run(main())
    assert locked() == 0
    events = m.market.events.OrderRecovered.get_logs(argument_filters={"interval": k}, from_block=m.dep.block)
    assert len(events) == 1 and events[0]["args"]["owner"] == me
    again = AgentStore(cfg.store_path)
    assert again.open_orders() == []  # marked finished: not asked about again


def test_a_failed_loop_is_logged_and_restarted(caplog: object) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="agent.runtime")  # type: ignore[attr-defined]
    runs = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("boom")

    clock = ManualClock(1_800_000_000.0, manual_waits=True)  # the back-off waits on the injected clock

    async def main() -> None:
        task = asyncio.create_task(AgentRuntime._supervise(SimpleNamespace(clock=clock), "flaky", flaky))  # type: ignore[arg-type]
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(runs) == 1 and not task.done()  # failed once, now backing off (0.5 s of the clock)
        clock.advance(0.4)
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(runs) == 1
        clock.advance(0.1)
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert len(runs) == 2
    text = caplog.text  # type: ignore[attr-defined]
    assert "agent loop flaky failed" in text and "boom" in text and "restarted" in text


def test_simulated_soc_and_dispatch_survive_a_restart(tmp_path: Path, ganache: Ganache) -> None:
    m = deploy_fresh(ganache, n_participants=1)
    clock = ManualClock(1_800_000_000.0)
    cfg = agent_config(tmp_path, m, 0, "http://127.0.0.1:9")
    first = AgentRuntime(cfg, clock=clock)

    async def run_for(rt: AgentRuntime, seconds: float) -> Any:
        await rt.site.connect()
        state = None
        for _ in range(int(seconds // 10)):
            clock.advance(10)
            state = await rt.site.tick()
        return state

    # discharge the battery hard for an hour under an accepted export schedule
    start, end = clock.now(), clock.now() + 3600
    first.site.set_market_schedule(start, end, 12_000.0, reason="test")
    first.store.put_state("dispatch:7", [start, end, 12_000.0])
    state = asyncio.run(run_for(first, 1800))
    first._save_soc(state)
    soc_before = state.soc
    assert soc_before < 0.75  # moved away from the configured 0.8
    first.store.close()

    again = AgentRuntime(cfg, clock=clock)
    again._resume_dispatch()
    assert again._committed_now()  # the dispatch window under way was re-applied
    state = asyncio.run(run_for(again, 10))
    assert abs(state.soc - soc_before) < 0.02  # resumed, not reset to 0.8
    again.store.close()
