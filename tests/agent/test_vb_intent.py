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
        assert _outbox(rt, "borrow") == []  # its battery covers its small load: no shortfall, no refill
        await rt.on_message(_lend(signer, "lender", 20_000, clock))  # more than it holds above the reserve
        await rt.on_message(_lend(signer, "lender", 1_000, clock))
        # what is left keeps the 1,000 Wh it promised and its own draw until the grant ends (no
        # forecast yet: its load's rating, 1.2 x 200 W, over the 960 s)
        bat = rt.site.last_state.devices["battery1"]
        left = (bat.soc - 0.1) * bat.capacity_wh - 1_000.0 - 240.0 * 960.0 / 3600.0
        await rt.on_message(_lend(signer, "lender", int(left) + 5, clock))
        await rt.on_message(_lend(signer, "lender", int(left) - 5, clock))

    asyncio.run(main())
    acks = [b for b in _outbox(rt, "ack") if b["kind"] == "lend"]
    assert [a["ok"] for a in acks] == [False, True, False, True]
    assert "above the owner's reserve" in acks[0]["reason"]
    assert "keeps for itself" in acks[2]["reason"]
    assert len(rt.grants) == 2


def test_a_full_store_too_weak_for_its_load_still_borrows_the_power_it_lacks() -> None:
    """Energy to spare is not power to spare: a contributing store whose inverter gives 100 W
    under a 1.5 kW load asks for the 1.4 kW it cannot give, and no refill."""
    from types import SimpleNamespace as NS

    from agent.control.vb_intent import borrow_request_w
    from agent.drivers.base import DeviceKind

    site = NS(control=NS(reserve_soc=0.2),
              drivers={"battery1": NS(kind=DeviceKind.BATTERY, writable=True),
                       "load1": NS(kind=DeviceKind.LOAD, writable=False)})
    state = NS(intent=NS(kind="contribute", reason="above the high threshold", energy_wh=0.0),
               devices={"battery1": NS(soc=0.9, capacity_wh=2_000.0, available_discharge_w=100.0,
                                       available_charge_w=100.0, power_w=0.0),
                        "load1": NS(soc=None, capacity_wh=None, available_discharge_w=0.0,
                                    available_charge_w=1_500.0, power_w=-1_500.0)})
    want, why = borrow_request_w(state, site, 900.0)
    assert want == 1_400.0 and "no refill" in why
    state.intent.kind = "request"
    state.intent.energy_wh = 300.0  # now it also wants 300 Wh back: 1.2 kW over 900 s, but takes 100 W
    assert borrow_request_w(state, site, 900.0)[0] == 1_500.0


def test_a_borrower_drops_a_grant_its_lender_refused(tmp_path: Path, chain_market: Market) -> None:  # noqa: F811
    """The coordinator withdraws a grant its lender refused: the borrower forgets it, so it does
    not bid for energy no lender offers; its other grants stay."""
    rt, clock, signer = _runtime(tmp_path, chain_market, LOW)

    def grant(counterparty: str, rid: int, revoke: bool = False) -> str:
        body = {"request_id": rid, "role": "borrower", "counterparty": counterparty, "power_w": 400.0,
                "energy_wh": 100, "start": T0 + 600, "end": T0 + 1500, "price": 170, "revoke": revoke}
        return signer.sign("lend", body).to_json()

    async def main() -> None:
        await _tick(rt, clock)
        await rt.on_message(grant("0x" + "ab" * 20, 1))
        await rt.on_message(grant("0x" + "cd" * 20, 1))
        assert len(rt.grants) == 2
        await rt.on_message(grant("0x" + "ab" * 20, 1, revoke=True))

    asyncio.run(main())
    assert [g["counterparty"] for g in rt.grants] == ["0x" + "cd" * 20]
    acks = [b for b in _outbox(rt, "ack") if b["kind"] == "lend"]
    assert [a["ok"] for a in acks] == [True, True, True]
