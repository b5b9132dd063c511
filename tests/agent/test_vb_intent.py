"""The device loop's intent shapes the running agent's virtual-battery traffic: a store below its
low threshold borrows what it needs to refill and never lends; a store with surplus never borrows
and lends only above the owner's reserve (agent/control/vb_intent.py through AgentRuntime)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nacl.signing import SigningKey

from agent.fleet_link import borrow_need_w
from agent.runtime import AgentRuntime
from gridswarm.clock import ManualClock
from gridswarm.messages import IntervalNotice
from tests.agent.test_runtime import _coordinator_signer, agent_config, chain_market  # noqa: F401 - fixture
from tests.conftest import Market

LOW = [{"type": "battery", "capacity_wh": 10_000.0, "max_charge_w": 2_000.0, "max_discharge_w": 2_000.0,
        "initial_soc": 0.12},
       {"type": "load", "profile": "household", "peak_w": 3_000.0}, {"type": "grid"}]
FULL = [{"type": "battery", "capacity_wh": 10_000.0, "max_charge_w": 2_000.0, "max_discharge_w": 2_000.0,
         "initial_soc": 0.95},
        {"type": "load", "profile": "household", "peak_w": 200.0}, {"type": "grid"}]
T0 = 1_800_000_000.0


def _runtime(tmp_path: Path, market: Market, devices: list) -> tuple[AgentRuntime, ManualClock, object]:
    clock = ManualClock(T0)
    cfg = agent_config(tmp_path, market, 0, "http://127.0.0.1:1", devices=devices, reserve_soc=0.1,
                       borrowing={"enabled": True, "min_w": 10.0})
    rt = AgentRuntime(cfg, clock=clock)
    key = SigningKey(b"\x07" * 32)
    rt._coordinator_key = key.verify_key
    return rt, clock, _coordinator_signer(key, clock)


async def _tick(rt: AgentRuntime, clock: ManualClock) -> None:
    await rt.site.connect()
    for _ in range(3):
        clock.advance(10.0)
        await rt.site.tick()


def _lend(signer, role: str, energy_wh: int, clock: ManualClock) -> str:
    body = {"request_id": 1, "role": role, "counterparty": "0x" + "ab" * 20, "power_w": 1_000.0,
            "energy_wh": energy_wh, "start": clock.now() + 60, "end": clock.now() + 960, "price": 170}
    return signer.sign("lend", body).to_json()


def _outbox(rt: AgentRuntime, kind: str) -> list[dict]:
    return [b for _id, k, b in rt.store.pending(500) if k == kind]


def test_a_store_below_its_low_threshold_borrows_to_refill_and_never_lends(tmp_path: Path,
                                                                           chain_market: Market) -> None:  # noqa: F811
    rt, clock, signer = _runtime(tmp_path, chain_market, LOW)

    async def main() -> None:
        await _tick(rt, clock)
        st = rt.site.last_state
        assert st.intent.kind == "request"
        notice = IntervalNotice(interval=1, delivery_start=clock.now() + 300, delivery_end=clock.now() + 1200,
                                gate_close=clock.now() + 200)
        rt._maybe_borrow(notice)
        asked = _outbox(rt, "borrow")
        assert len(asked) == 1
        # the shortfall plus the refill the device loop asks for (0.3 - 0.12 of 10 kWh over 900 s,
        # within the 2 kW the battery can take)
        assert asked[0]["power_w"] > borrow_need_w(st, rt.site) + 1_500.0
        await rt.on_message(_lend(signer, "lender", 100, clock))

    asyncio.run(main())
    acks = [b for b in _outbox(rt, "ack") if b["kind"] == "lend"]
    assert acks and acks[-1]["ok"] is False and "device loop requests energy" in acks[-1]["reason"]
    assert rt.grants == []


def test_a_store_with_surplus_never_borrows_and_lends_only_above_the_reserve(tmp_path: Path,
                                                                            chain_market: Market) -> None:  # noqa: F811
    rt, clock, signer = _runtime(tmp_path, chain_market, FULL)

    async def main() -> None:
        await _tick(rt, clock)
        assert rt.site.last_state.intent.kind == "contribute"
        rt._maybe_borrow(IntervalNotice(interval=1, delivery_start=clock.now() + 300,
                                        delivery_end=clock.now() + 1200, gate_close=clock.now() + 200))
        assert _outbox(rt, "borrow") == []
        await rt.on_message(_lend(signer, "lender", 20_000, clock))  # more than it holds above the reserve
        await rt.on_message(_lend(signer, "lender", 1_000, clock))

    asyncio.run(main())
    acks = [b for b in _outbox(rt, "ack") if b["kind"] == "lend"]
    assert [a["ok"] for a in acks] == [False, True]
    assert "above the owner's reserve" in acks[0]["reason"]
    assert len(rt.grants) == 1
