"""Arm messages at the agent: a forged, expired or over-rating arm changes nothing."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import yaml
from nacl.signing import SigningKey

from agent.config import AgentConfig
from agent.runtime import AgentRuntime
from gridswarm.clock import ManualClock
from gridswarm.envelope import Signer
from gridswarm.keys import derive_ed25519, derive_eth_account, write_ed25519, write_eth_key

T0 = 1_800_000_000.0
DEVICES = [{"type": "battery", "capacity_wh": 10_000.0, "max_charge_w": 5_000.0, "max_discharge_w": 5_000.0},
           {"type": "grid"}]


def runtime(tmp: Path) -> tuple[AgentRuntime, ManualClock]:
    dead = "http://127.0.0.1:9"
    (tmp / "dep.json").write_text(json.dumps({"chain_id": 1337, "token": "0x" + "00" * 20, "market": "0x" + "00" * 20,
                                              "abis": {}}))
    cfg = {"site": "arm", "eth_key_file": str(write_eth_key(tmp / "e.key", derive_eth_account(3, "x"))),
           "ed25519_key_file": str(write_ed25519(tmp / "d.key", derive_ed25519(3, "x"))),
           "coordinator_url": dead, "rpc_url": dead, "deployment": str(tmp / "dep.json"),
           "store_path": str(tmp / "a.sqlite"), "devices": DEVICES}
    (tmp / "s.yaml").write_text(yaml.safe_dump(cfg))
    clock = ManualClock(T0)
    return AgentRuntime(AgentConfig.load(tmp / "s.yaml"), clock=clock), clock


def arm(**kw: object) -> dict:
    return {"armed": True, "droop": 0.0097, "deadband_hz": 0.015, "knee_hz": 0.2, "knee_fraction": 0.05,
            "share_w": 2000.0, "until_ts": T0 + 600, **kw}


def test_arm_with_share_and_expiry_and_its_refusals(tmp_path: Path) -> None:
    rt, clock = runtime(tmp_path)
    key = SigningKey(b"\x05" * 32)
    rt._coordinator_key = key.verify_key
    counter = itertools.count(1)
    signer = Signer(key, "coordinator", clock, lambda: next(counter))
    forger = Signer(SigningKey(b"\x06" * 32), "coordinator", clock, lambda: next(counter))

    async def main() -> None:
        await rt.site.connect()
        await rt.on_message(signer.sign("arm", arm()).to_json())
        good = rt.site.frequency_arm
        assert good is not None and good.p_ref_w == 2000.0 and good.max_power_w == 2000.0 and good.knee_hz == 0.2
        await rt.on_message(forger.sign("arm", arm(share_w=100.0)).to_json())  # forged
        assert rt.rejected[-1][0] == "forged"
        await rt.on_message(signer.sign("arm", arm(share_w=100.0, until_ts=T0 - 1)).to_json())  # expired arm
        await rt.on_message(signer.sign("arm", arm(share_w=50_000.0)).to_json())  # above the rating
        await rt.on_message(signer.sign("arm", arm(share_w=-5.0)).to_json())  # negative share
        assert rt.rejected[-1][0] == "malformed"
        old = signer.sign("arm", arm(share_w=100.0))
        clock.advance(10_000)  # the envelope itself expired in transit
        await rt.on_message(old.to_json())
        assert rt.rejected[-1][0] == "expired"
        assert rt.site.frequency_arm is good  # nothing changed

    asyncio.run(main())
    reasons = [c["reason"] for c in rt.store.commands() if c["kind"] == "arm"]
    assert reasons[0] == "armed"
    assert "expired" in reasons[1] and "above the site's storage rating" in reasons[2]
    acks = [b for _, kind, b in rt.store.pending() if kind == "ack"]
    assert [a["ok"] for a in acks] == [True, False, False]
