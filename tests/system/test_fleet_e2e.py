"""The fleet end to end: real Ganache, the real coordinator with its fleet service, two real
agent runtimes on one scaled clock, a loss-of-infeed event replayed by their grid meters."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from agent.runtime import AgentRuntime
from app.devnet import Ganache
from coordinator.service import create_app
from gridswarm.clock import ScaledClock
from gridswarm.envelope import Signer
from gridswarm.keys import hash_operator_key
from tests.agent.test_runtime import ServerThread, agent_config
from tests.conftest import deploy_fresh
from tests.coordinator.conftest import write_settings
from tests.support.waiting import wait_until_async

SIM_START = 1_782_054_000.0


def devices(soc: float) -> list[dict]:
    trace = {"base": "gb_normal_day", "start_ts": SIM_START, "event": "gb_loss_of_infeed", "event_ts": SIM_START + 30}
    return [
        {"type": "battery", "capacity_wh": 10_000.0, "max_charge_w": 5_000.0, "max_discharge_w": 5_000.0,
         "initial_soc": soc},
        {"type": "grid", "frequency_trace": trace},
    ]


def test_fleet_sizes_arms_and_rides_a_frequency_event(ganache: Ganache, tmp_path: Path) -> None:
    m = deploy_fresh(ganache, n_participants=2)
    clock = ScaledClock(sim_start=SIM_START, speed=40.0, wall_anchor=time.time())
    settings = write_settings(tmp_path, m, run_market=False, index_poll_s=0.1, message_ttl_s=900.0,
                              dashboard={"operator_key_sha256": hash_operator_key("op-key")},
                              fleet={"enabled": True, "required_w": 3000.0, "check_s": 5.0, "rearm_s": 20.0,
                                     "stale_s": 60.0, "sustain_s": 900.0, "emergency_hold_s": 60.0})
    app = create_app(settings, clock=clock)
    with ServerThread(app, settings.port) as srv:
        # site 0 has 0.35 - 0.2 = 1500 Wh above its reserve (6000 W over 15 min, capped by
        # power); site 1 only 500 Wh (2000 W): shares of 3000 W by headroom
        rts = [AgentRuntime(agent_config(tmp_path, m, i, srv.base, tick_s=5.0, telemetry_every_s=5.0,
                                         reserve_soc=0.2, devices=devices(soc), frequency={"poll_s": 0.5}),
                            clock=clock)
               for i, soc in enumerate((0.8, 0.25))]

        async def main() -> dict:
            stop = asyncio.Event()
            tasks = [asyncio.create_task(rt.run(stop)) for rt in rts]
            try:
                async with httpx.AsyncClient(base_url=srv.base, timeout=5) as client:
                    seen = {}

                    async def event_and_after() -> bool:
                        seen["fleet"] = fleet = (await client.get("/api/v1/fleet")).json()
                        return bool(fleet["frequency_events"]) and clock.now() > SIM_START + 30 + 130

                    await wait_until_async(event_and_after, "a frequency event and 130 s after it", 90, poll_s=0.3)
                    fleet = seen["fleet"]
                    site0 = (await client.get(f"/api/v1/fleet/sites/{rts[0].address}")).json()
                    hist = (await client.get(f"/api/v1/fleet/sites/{rts[0].address}/telemetry")).json()
                    missing = await client.get("/api/v1/fleet/sites/0x" + "ab" * 20)
                    op = {"Authorization": "Bearer op-key"}
                    anon = await client.post("/api/v1/fleet/mode", json={"mode": "standby"})
                    bad = await client.post("/api/v1/fleet/mode", json={"mode": "panic"}, headers=op)
                    ok = await client.post("/api/v1/fleet/mode", json={"mode": "standby"}, headers=op)
                    p = m.participants[0]
                    forged_seq = Signer(p.ed25519, p.account.address, clock, lambda: 10**9)
                    bad_tel = forged_seq.sign("telemetry", {"ts": clock.now(), "net_export_w": 0.0, "soc": 1.5,
                                                            "record_id": 10**6, "devices": {}})
                    before = len(fleet_sites := (await client.get("/api/v1/fleet")).json()["sites"])
                    refused = await client.post("/api/v1/messages", content=bad_tel.to_json())
                    after = (await client.get(f"/api/v1/fleet/sites/{p.account.address}")).json()
                    assert refused.status_code == 400 and "soc" in refused.json()["detail"]["message"]
                    assert after["soc"] != 1.5 and before == len(fleet_sites)
                    acks_pending = [sum(1 for _, k, _b in rt.store.pending(500) if k == "ack") for rt in rts]
                    arms_ok = [any(c["kind"] == "arm" and c["accepted"] for c in rt.store.commands()) for rt in rts]
                    return {"acks_pending": acks_pending, "arms_ok": arms_ok,
                            "fleet": fleet, "site0": site0, "hist": hist, "missing": missing.status_code,
                            "bad": bad.status_code, "ok": ok.json(),
                            "anon": anon.status_code}
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)

        out = asyncio.run(main())
    fleet = out["fleet"]
    by = {s["address"]: s for s in fleet["sites"]}
    a0, a1 = (by[rt.address] for rt in rts)
    # per-device telemetry reached the fleet state
    bat = a0["devices"]["battery1"]
    assert bat["kind"] == "battery" and bat["usable_wh"] > 0 and bat["rated_w"] > 0 and "soh" in bat
    assert out["site0"]["address"] == rts[0].address and out["hist"]["count"] >= 2
    assert out["hist"]["data"][0]["devices"]["battery1"]["kind"] == "battery"
    # shares follow headroom above the reserve and sum to the requirement
    assert a0["max_rate_w"] > a1["max_rate_w"] > 0
    assert a0["share_w"] + a1["share_w"] == pytest.approx(3000.0, rel=1e-3)
    assert a0["share_w"] / a1["share_w"] == pytest.approx(a0["max_rate_w"] / a1["max_rate_w"], rel=1e-3)
    # every agent accepted its signed arm and carries its share
    for rt, s in ((rts[0], a0), (rts[1], a1)):
        arm = rt.site.frequency_arm
        assert arm is not None and arm.knee_hz == 0.2
        assert arm.p_ref_w == pytest.approx(s["armed"]["share_w"], rel=0.05)  # SoC moved: re-armed since
    assert out["arms_ok"] == [True, True]
    # the agents' acknowledgements were acknowledged in turn: none piles up in their outboxes
    assert all(n <= 2 for n in out["acks_pending"]), out["acks_pending"]
    # the event was measured, switched the mode, and the fleet responded
    ev = fleet["frequency_events"][0]
    assert ev["min_hz"] < 49.8 and ev["peak_delivered_w"] > 0 and ev["sites_responding"] >= 1
    assert ("mode", "mode support -> emergency") in [(e["kind"], e["message"]) for e in fleet["events"]]
    assert fleet["service"]["arms_sent"] >= 2
    assert out["missing"] == 404 and out["bad"] == 422 and out["ok"]["operator_mode"] == "standby"
    assert out["anon"] == 401  # a mode change needs the operator key
