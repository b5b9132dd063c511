"""The virtual battery on chain: a site short of storage asks the fleet, the coordinator grants
it from another site's battery, both trade the energy through the normal order path at the
operator's price, and the chain shows the trade (real Ganache, coordinator, market loop, agents)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from agent.runtime import AgentRuntime
from app.devnet import Ganache
from coordinator.service import create_app
from gridswarm.clock import ScaledClock
from tests.agent.test_runtime import ServerThread, agent_config
from tests.conftest import deploy_fresh
from tests.coordinator.conftest import write_settings
from tests.support.waiting import wait_until_async

SIM_START = 1_782_054_000.0
PRICE = 170
# A: a household load with a battery that gives at most 100 W; B: a big battery, a small load
SHORT = [{"type": "battery", "capacity_wh": 2_000.0, "max_charge_w": 100.0, "max_discharge_w": 100.0,
          "initial_soc": 0.9},
         {"type": "load", "profile": "household", "peak_w": 1_500.0}, {"type": "grid"}]
LENDER = [{"type": "battery", "capacity_wh": 10_000.0, "max_charge_w": 3_000.0, "max_discharge_w": 3_000.0,
           "initial_soc": 0.9},
          {"type": "load", "profile": "household", "peak_w": 300.0}, {"type": "grid"}]


def test_borrowed_energy_is_a_trade_on_chain(ganache: Ganache, tmp_path: Path) -> None:
    m = deploy_fresh(ganache, n_participants=2)
    clock = ScaledClock(sim_start=SIM_START, speed=100.0, wall_anchor=time.time())
    settings = write_settings(
        tmp_path, m, run_market=True, index_poll_s=0.1, message_ttl_s=900.0,
        market={"interval_s": 900.0, "gate_lead_s": 300.0, "meter_wait_s": 300.0, "intervals": 2,
                "expected_agents": 2, "agent_wait_s": 60.0},
        fleet={"enabled": True, "required_w": 0.0, "check_s": 10.0, "stale_s": 900.0, "borrow_price": PRICE})
    app = create_app(settings, clock=clock)
    with ServerThread(app, settings.port) as srv:
        a = AgentRuntime(agent_config(tmp_path, m, 0, srv.base, tick_s=30.0, telemetry_every_s=30.0, reserve_soc=0.2,
                                      devices=SHORT, trading={"role": "buyer"}, borrowing={"enabled": True}),
                         clock=clock)
        b = AgentRuntime(agent_config(tmp_path, m, 1, srv.base, tick_s=30.0, telemetry_every_s=30.0, reserve_soc=0.2,
                                      devices=LENDER, trading={"role": "seller"}), clock=clock)

        async def main() -> dict:
            stop = asyncio.Event()
            tasks = [asyncio.create_task(rt.run(stop)) for rt in (a, b)]
            try:
                async with httpx.AsyncClient(base_url=srv.base, timeout=10) as client:

                    async def both_final() -> bool:
                        h = (await client.get("/healthz")).json()
                        return h["intervals_settled"] + h["intervals_failed"] >= 2

                    await wait_until_async(both_final, "both intervals final", 180, poll_s=0.5)
                    fleet = (await client.get("/api/v1/fleet")).json()
                    trades = (await client.get("/api/v1/trades", params={"limit": 1000})).json()["data"]
                    return {"fleet": fleet, "trades": trades, "grants_a": list(a.grants), "replies": a.borrow_replies,
                            "dbg": (a.address, b.address, a.store.pending()[:5], b.store.pending_count())}
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)

        out = asyncio.run(main())
    grants = out["fleet"]["borrowing"]["grants"]
    assert grants, (out["dbg"], out["replies"], out["fleet"]["events"])
    g = grants[0]
    assert g["borrower"] == a.address and g["lender"] == b.address and g["price"] == PRICE
    assert out["replies"][0]["ok"]
    # the granted energy was traded on chain in the interval that delivers it, at the operator's price
    k = int(g["start"] // 900)
    in_k = {(t["owner"], t["side"]): t for t in out["trades"] if t["interval"] == k}
    bid, offer = in_k[(a.address, "bid")], in_k[(b.address, "offer")]
    assert bid["qty_wh"] == offer["qty_wh"] == g["energy_wh"]
    assert bid["price"] == offer["price"] == PRICE
    assert offer["settle_tx"] and offer["delivered_wh"] == g["energy_wh"]  # the lender delivered it
