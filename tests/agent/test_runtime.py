"""The agent runtime: dispatch checks, the outbox across a coordinator outage, restarts."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from nacl.signing import SigningKey

from agent.config import AgentConfig, ConfigError
from agent.runtime import AgentRuntime
from app.devnet import Ganache
from coordinator.service import create_app
from gridswarm.clock import ManualClock, ScaledClock
from gridswarm.envelope import Signer
from gridswarm.keys import write_ed25519, write_eth_key
from gridswarm.messages import IntervalNotice
from tests.conftest import Market, deploy_fresh
from tests.coordinator.conftest import write_settings
from tests.support.waiting import healthy, wait_until, wait_until_async

SELLER_DEVICES = [
    {"type": "pv", "peak_w": 8000.0},
    {"type": "battery", "capacity_wh": 13500.0, "max_charge_w": 5000.0, "max_discharge_w": 5000.0, "initial_soc": 0.8},
    {"type": "load", "profile": "household", "peak_w": 2000.0},
    {"type": "grid"},
]


def agent_config(tmp: Path, m: Market, i: int, coordinator_url: str, **extra: object) -> AgentConfig:
    p = m.participants[i]
    cfg = {
        "site": f"test{i}",
        "eth_key_file": str(write_eth_key(tmp / f"a{i}.key", p.account)),
        "ed25519_key_file": str(write_ed25519(tmp / f"a{i}.ed25519", p.ed25519)),
        "coordinator_url": coordinator_url,
        "rpc_url": m.w3.provider.endpoint_uri,  # type: ignore[attr-defined]
        "deployment": str(m.dep.save(tmp / "deployment.json")),
        "store_path": str(tmp / f"agent{i}.sqlite"),
        "tick_s": 10.0,
        "telemetry_every_s": 10.0,
        "reconnect_s": 0.2,
        "devices": SELLER_DEVICES,
        **extra,
    }
    path = tmp / f"site{i}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return AgentConfig.load(path)


@pytest.fixture(scope="module")
def chain_market(ganache: Ganache) -> Market:
    return deploy_fresh(ganache)


# ------------------------------------------------------------------ config


def test_config_error_names_the_field(tmp_path: Path, chain_market: Market) -> None:
    cfg = agent_config(tmp_path, chain_market, 0, "http://127.0.0.1:1")
    raw = yaml.safe_load((tmp_path / "site0.yaml").read_text())
    raw["trading"] = {"offer_price": -5}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="trading.offer_price"):
        AgentConfig.load(tmp_path / "bad.yaml")
    raw["trading"] = {}
    raw["coordinatr_url"] = "typo"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="coordinatr_url"):
        AgentConfig.load(tmp_path / "bad.yaml")
    assert cfg.site == "test0"


def test_device_error_names_the_field(tmp_path: Path, chain_market: Market) -> None:
    bad = [{"type": "battery", "capacity_wh": -1.0, "max_charge_w": 1.0, "max_discharge_w": 1.0}]
    # the config's device models reject it when the file is read, before anything starts
    with pytest.raises(ConfigError, match=r"devices\[0\]\.capacity_wh: must be > 0, got -1.0"):
        agent_config(tmp_path, chain_market, 0, "http://127.0.0.1:1", devices=bad)


# ------------------------------------------------------------------ dispatch


def _coordinator_signer(key: SigningKey, clock: ManualClock) -> Signer:
    counter = itertools.count(1)
    return Signer(key, "coordinator", clock, lambda: next(counter))


def test_dispatch_checks(tmp_path: Path, chain_market: Market) -> None:
    clock = ManualClock(1_800_000_000.0)
    cfg = agent_config(tmp_path, chain_market, 0, "http://127.0.0.1:1")
    rt = AgentRuntime(cfg, clock=clock)
    coord_key = SigningKey(b"\x07" * 32)
    rt._coordinator_key = coord_key.verify_key
    signer = _coordinator_signer(coord_key, clock)
    k = 2_000_000
    rt.store.record_order(k, 123, "offer", 500, 100, "0xabc", clock.now() + 900, clock.now() + 1800)
    start, end = clock.now() + 900, clock.now() + 1800

    def dispatch(export_w: float = 2000.0, order_id: int = 123, qty: int = 500, kk: int = k) -> dict:
        return {
            "interval": kk, "start": start, "end": end, "export_w": export_w,
            "fills": [{"order_id": order_id, "side": "offer", "qty_wh": qty, "price": 100}],
        }

    def schedules() -> list:
        return list(rt.site.market_schedules)

    async def main() -> None:
        # unsigned, forged, expired, from a stranger, malformed: nothing changes
        env = signer.sign("dispatch", dispatch()).to_dict()
        env["signature"] = ""
        await rt.on_message(__import__("json").dumps(env))
        forged = signer.sign("dispatch", dispatch()).to_dict()
        forged["body"]["export_w"] = 1e9
        await rt.on_message(__import__("json").dumps(forged))
        stale = signer.sign("dispatch", dispatch())
        clock.advance(500)
        await rt.on_message(stale.to_json())
        stranger = _coordinator_signer(SigningKey(b"\x08" * 32), clock)
        await rt.on_message(stranger.sign("dispatch", dispatch()).to_json())
        await rt.on_message(signer.sign("dispatch", {"interval": k}).to_json())
        assert schedules() == []
        reasons = [r for r, _ in rt.rejected]
        assert reasons == ["unsigned", "forged", "expired", "forged", "malformed"]
        # authentic but wrong: someone else's order, more than we offered, unknown interval
        await rt.on_message(signer.sign("dispatch", dispatch(order_id=999)).to_json())
        await rt.on_message(signer.sign("dispatch", dispatch(qty=501)).to_json())
        await rt.on_message(signer.sign("dispatch", dispatch(kk=k + 1)).to_json())
        assert schedules() == []
        # the good one is applied; a replay of it is rejected
        good = signer.sign("dispatch", dispatch())
        await rt.on_message(good.to_json())
        assert len(schedules()) == 1
        await rt.on_message(good.to_json())
        assert rt.rejected[-1][0] == "replayed"
        assert len(schedules()) == 1

    asyncio.run(main())
    log = rt.store.commands()
    dispatches = [c for c in log if c["kind"] == "dispatch"]
    assert [c["accepted"] for c in dispatches] == [0, 0, 0, 1]
    assert all(c["reason"] for c in log)
    # acknowledgements (good and bad) wait in the outbox, one per interval
    pending = rt.store.pending()
    assert {b["interval"]: b["ok"] for _, kind, b in pending if kind == "ack"} == {k: True, k + 1: False}


def test_arm_message_arms_local_frequency_response(tmp_path: Path, chain_market: Market) -> None:
    clock = ManualClock(1_800_000_000.0)
    rt = AgentRuntime(agent_config(tmp_path, chain_market, 0, "http://127.0.0.1:1"), clock=clock)
    coord_key = SigningKey(b"\x07" * 32)
    rt._coordinator_key = coord_key.verify_key
    signer = _coordinator_signer(coord_key, clock)

    async def main() -> None:
        await rt.site.connect()
        await rt.on_message(signer.sign("arm", {"armed": True, "droop": 5.0}).to_json())  # out of range
        assert rt.site.frequency_arm is None
        assert rt.rejected[-1][0] == "malformed"
        await rt.on_message(signer.sign("arm", {"armed": True, "droop": 0.05, "deadband_hz": 0.015}).to_json())
        assert rt.site.frequency_arm is not None and rt.site.frequency_arm.droop == 0.05
        await rt.on_message(signer.sign("arm", {"armed": False}).to_json())
        assert rt.site.frequency_arm is None

    asyncio.run(main())
    assert [c["reason"] for c in rt.store.commands() if c["kind"] == "arm"] == ["armed", "disarmed"]


def test_refused_records_are_retried_or_given_up_by_reason(tmp_path: Path, chain_market: Market) -> None:
    clock = ManualClock(1_800_000_000.0)
    rt = AgentRuntime(agent_config(tmp_path, chain_market, 0, "http://127.0.0.1:1"), clock=clock)
    coord_key = SigningKey(b"\x07" * 32)
    rt._coordinator_key = coord_key.verify_key
    signer = _coordinator_signer(coord_key, clock)
    rt.store.enqueue("telemetry", {"record_id": 1}, "t:1", clock.now())
    rt.store.enqueue("telemetry", {"record_id": 2}, "t:2", clock.now())
    (id1, _, _), (id2, _, _) = rt.store.pending()
    rt._inflight = {41: (id1, 0.0), 42: (id2, 0.0)}

    async def main() -> None:
        await rt.on_message(signer.sign("error", {"reason": "expired", "message": "late", "seq": 41}).to_json())
        await rt.on_message(signer.sign("error", {"reason": "malformed", "message": "bad", "seq": 42}).to_json())

    asyncio.run(main())
    assert rt._inflight == {}
    assert [i for i, _, _ in rt.store.pending()] == [id1]  # retried; the malformed one is given up


def test_one_acks_envelope_acknowledges_several_records_and_one_busy_sheds_several(
    tmp_path: Path, chain_market: Market
) -> None:
    """The coordinator answers messages stored together with one signed ``acks``, and messages
    it shed with one ``busy`` listing their seqs: each record is acknowledged or goes again,
    none is given up, and a seq the agent did not send changes nothing."""
    clock = ManualClock(1_800_000_000.0)
    rt = AgentRuntime(agent_config(tmp_path, chain_market, 0, "http://127.0.0.1:1"), clock=clock)
    coord_key = SigningKey(b"\x07" * 32)
    rt._coordinator_key = coord_key.verify_key
    signer = _coordinator_signer(coord_key, clock)
    for r in range(1, 6):
        rt.store.enqueue("telemetry", {"record_id": r}, f"t:{r}", clock.now())
    ids = [i for i, _, _ in rt.store.pending()]
    rt._inflight = {50 + n: (i, 0.0) for n, i in enumerate(ids)}  # seqs 50..54

    async def main() -> None:
        acks = [{"kind": "telemetry", "seq": q} for q in (50, 51, 99)]  # 99 was never sent
        await rt.on_message(signer.sign("acks", {"acks": acks}).to_json())
        busy = {"reason": "busy", "message": "full", "seq": 52, "seqs": [52, 53]}
        await rt.on_message(signer.sign("error", busy).to_json())
        too_many = {"acks": [{"kind": "telemetry", "seq": 54}] * 257}  # over MAX_ACKS: refused whole
        await rt.on_message(signer.sign("acks", too_many).to_json())

    asyncio.run(main())
    assert [i for i, _, _ in rt.store.pending()] == ids[2:]  # 52 and 53 go again, 54 is unanswered
    assert rt._inflight == {54: (ids[4], 0.0)}
    assert rt.rejected and rt.rejected[-1][0] == "malformed"


def test_dispatch_beyond_limits_is_rejected_or_clamped(tmp_path: Path, chain_market: Market) -> None:
    clock = ManualClock(1_800_000_000.0)
    rt = AgentRuntime(agent_config(tmp_path, chain_market, 0, "http://127.0.0.1:1"), clock=clock)
    coord_key = SigningKey(b"\x07" * 32)
    rt._coordinator_key = coord_key.verify_key
    signer = _coordinator_signer(coord_key, clock)
    k = 2_000_000
    start, end = clock.now(), clock.now() + 900
    rt.store.record_order(k, 5, "offer", 10_000_000, 100, "0xabc", start, end)

    def body(export_w: float) -> dict:
        return {"interval": k, "start": start, "end": end, "export_w": export_w,
                "fills": [{"order_id": 5, "side": "offer", "qty_wh": 100, "price": 100}]}

    async def main() -> float:
        await rt.site.connect()
        # 10 MW: beyond the grid connection -> rejected, nothing scheduled
        await rt.on_message(signer.sign("dispatch", body(1e7)).to_json())
        assert rt.site.market_schedules == ()
        # 20 kW: allowed at the connection but beyond a 5 kW battery + PV -> clamped by the site
        await rt.on_message(signer.sign("dispatch", body(20_000.0)).to_json())
        assert len(rt.site.market_schedules) == 1
        state = None
        for _ in range(5):
            clock.advance(10)
            state = await rt.site.tick()
        assert state is not None
        return float(state.net_export_w)

    net = asyncio.run(main())
    assert net <= 5000.0 + 8000.0 + 1.0  # never beyond battery + PV, whatever the schedule says
    accepted = [c["accepted"] for c in rt.store.commands() if c["kind"] == "dispatch"]
    assert accepted == [0, 1]
    assert "grid connection" in rt.store.commands()[0]["reason"]


# ------------------------------------------------------------------ never lose data


class ServerThread:
    def __init__(self, app: object, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.base = f"http://127.0.0.1:{port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()

        def running() -> None:
            if not self.thread.is_alive():
                raise AssertionError(f"the server on {self.base} stopped before serving")

        try:
            wait_until(lambda: healthy(self.base, timeout=1), f"the server on {self.base}", check=running)
        except AssertionError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def coordinator_parts(ganache: Ganache, tmp_path: Path) -> Iterator[tuple[Market, object]]:
    m = deploy_fresh(ganache, n_participants=2)
    settings = write_settings(tmp_path, m, run_market=False, index_poll_s=0.1, message_ttl_s=900.0)
    yield m, settings


def test_outage_loses_nothing_and_duplicates_nothing(tmp_path: Path, coordinator_parts: tuple) -> None:
    m, settings = coordinator_parts
    # 1500x: the ~2 s outage below lasts over 3 simulated 15-minute intervals
    clock = ScaledClock(sim_start=1_800_000_000.0, speed=1500.0)
    cfg = agent_config(
        tmp_path, m, 0, f"http://127.0.0.1:{settings.port}", tick_s=30.0, telemetry_every_s=60.0, message_ttl_s=900.0
    )

    def telemetry_rows() -> list[int]:
        import sqlite3

        with sqlite3.connect(settings.db_path) as conn:
            return [r[0] for r in conn.execute("select record_id from telemetry where sender = ?", (rt.address,))]

    rt = AgentRuntime(cfg, clock=clock)

    async def main() -> tuple[int, list[int]]:
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run(stop))
        with ServerThread(create_app(settings, clock=clock), settings.port):
            await asyncio.wait_for(rt.connected.wait(), 20)

            async def stored() -> bool:
                return len(await asyncio.to_thread(telemetry_rows)) >= 3

            await wait_until_async(stored, "telemetry stored while connected")
        # coordinator down: the site goes autonomous and telemetry piles up in the outbox
        await wait_until_async(lambda: rt.site.autonomous, "the site going autonomous")
        assert rt.site.autonomous
        queued, down_at = rt.store.pending_count(), clock.now()
        await clock.sleep(3 * 900 + 60)  # three intervals and a bit, simulated
        assert clock.now() - down_at > 3 * 900
        assert rt.store.pending_count() > queued
        with ServerThread(create_app(settings, clock=clock), settings.port):
            await asyncio.wait_for(rt.connected.wait(), 20)
            assert not rt.site.autonomous
            seen: dict[str, Any] = {}

            async def caught_up() -> bool:
                seen["total"] = total = rt.store.next_counter("telemetry") - 1  # records queued so far
                seen["rows"] = rows = await asyncio.to_thread(telemetry_rows)
                return bool(rows) and len(set(rows)) >= total - 2

            await wait_until_async(caught_up, "the outbox's telemetry delivered", poll_s=0.3)
            total, rows = seen["total"], seen["rows"]
            stop.set()
            await task
            return total, rows

    total, rows = asyncio.run(main())
    assert len(rows) == len(set(rows)), "a telemetry record was stored twice"
    # every record queued before the last moments arrived: no gaps in the sequence
    assert sorted(rows)[: total - 3] == list(range(1, total - 2))


def test_restart_mid_interval_posts_no_duplicate_order(tmp_path: Path, chain_market: Market) -> None:
    m = chain_market
    clock = ManualClock(1_800_000_000.0)
    k = 3_000_000
    m.sender(m.operator).transact(m.market.functions.openInterval(k))
    notice = IntervalNotice(interval=k, delivery_start=clock.now() + 900, delivery_end=clock.now() + 1800,
                            gate_close=clock.now() + 600)
    cfg = agent_config(tmp_path, m, 1, "http://127.0.0.1:1", trading={"role": "seller", "price_jitter": 0})

    def posted() -> int:
        logs = m.market.events.OrderPosted.get_logs(
            argument_filters={"interval": k, "owner": m.participants[1].account.address}, from_block=m.dep.block
        )
        return len(logs)

    async def trade(runtime: AgentRuntime) -> None:
        await runtime.site.connect()
        clock.advance(1)
        await runtime.site.tick()
        await runtime.trade(notice)
        for t in list(runtime._tasks):
            t.cancel()

    first = AgentRuntime(cfg, clock=clock)
    asyncio.run(trade(first))
    assert posted() == 1
    order = first.store.order_for(k)
    assert order is not None and order["side"] == "offer"
    first.store.close()
    # restart with the same store: the order is known locally
    again = AgentRuntime(cfg, clock=clock)
    asyncio.run(trade(again))
    assert posted() == 1
    again.store.close()
    # restart with the store lost: the chain still says an order exists
    Path(cfg.store_path).unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(cfg.store_path) + suffix).unlink(missing_ok=True)
    fresh = AgentRuntime(cfg, clock=clock)
    asyncio.run(trade(fresh))
    assert posted() == 1
    assert fresh.store.order_for(k)["order_id"] == order["order_id"]


def test_the_same_notice_twice_at_once_posts_one_order(tmp_path: Path, chain_market: Market) -> None:
    """A reconnect's obligations and the broadcast can bring one interval's notice twice, at
    the same moment: the two trade tasks must not both post (the contract allows an account
    several orders in one interval, one per free slot)."""
    m = chain_market
    clock = ManualClock(1_800_000_000.0)
    k = 3_000_001
    m.sender(m.operator).transact(m.market.functions.openInterval(k))
    notice = IntervalNotice(interval=k, delivery_start=clock.now() + 900, delivery_end=clock.now() + 1800,
                            gate_close=clock.now() + 600)
    cfg = agent_config(tmp_path, m, 2, "http://127.0.0.1:1", trading={"role": "seller", "price_jitter": 0})

    async def both() -> None:
        runtime = AgentRuntime(cfg, clock=clock)
        await runtime.site.connect()
        clock.advance(1)
        await runtime.site.tick()
        await asyncio.gather(runtime.trade(notice), runtime.trade(notice))
        for t in list(runtime._tasks):
            t.cancel()
        runtime.store.close()

    asyncio.run(both())
    logs = m.market.events.OrderPosted.get_logs(
        argument_filters={"interval": k, "owner": m.participants[2].account.address}, from_block=m.dep.block
    )
    assert len(logs) == 1


def test_site_runs_autonomously_without_chain_or_coordinator(tmp_path: Path, chain_market: Market) -> None:
    clock = ScaledClock(sim_start=1_800_000_000.0, speed=200.0)
    cfg = agent_config(tmp_path, chain_market, 0, "http://127.0.0.1:9", rpc_url="http://127.0.0.1:9", chain_check_s=0.1)
    rt = AgentRuntime(cfg, clock=clock)

    async def main() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run(stop))
        await wait_until_async(lambda: rt.site.ticks >= 5 and rt.site.autonomous, "five autonomous control ticks")
        ticks = rt.site.ticks
        autonomous = rt.site.autonomous
        stop.set()
        await task
        assert autonomous
        return ticks

    assert asyncio.run(main()) >= 5  # the control loop kept ticking (10 s ticks at 200x: ~20 in 1 s)
