"""Benchmark: grid-frequency step to storage setpoint written, in a running agent process.

The bench process serves a simulated SunSpec battery inverter (model 701 reports ``Hz``, 704
takes the setpoint) over Modbus TCP on 127.0.0.1 and starts a real agent process
(:class:`agent.runtime.AgentRuntime`, wall clock, the default fast path) whose only device is that
inverter. The agent is armed on GB Dynamic Containment's curve for ``share_w`` directly (there
is no coordinator in this bench; the arming path is tested elsewhere). The bench then steps the
inverter's ``Hz`` register between 50.00 Hz and a low value at random moments and times, on its
own clock, the step until the inverter receives the new setpoint: the full path register ->
Modbus read -> droop -> arbitration -> Modbus write, through the real driver and process.

    python -m bench.fleet_latency [--steps 40] [--out bench/results/fleet_latency.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from agent.drivers.sunspec_sim import SunSpecSimDevice, free_port
from bench.info import machine, write_results
from gridswarm.clock import WallClock


async def _agent_main(config: str, share_w: float) -> None:
    from agent.config import AgentConfig
    from agent.control.frequency import dynamic_containment
    from agent.runtime import AgentRuntime

    cfg = AgentConfig.load(Path(config))
    rt = AgentRuntime(cfg)
    await rt.site.connect()
    dc = dynamic_containment(share_w)
    rt.site.arm_frequency_response(droop=dc.droop, deadband_hz=dc.deadband_hz, p_ref_w=share_w, max_power_w=share_w,
                                   knee_hz=dc.knee_hz, knee_fraction=dc.knee_fraction)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await rt.run(stop)


async def run(steps: int, share_w: float, low_hz: float, poll_s: float, tmp: Path) -> dict[str, Any]:
    clock = WallClock()
    dev = SunSpecSimDevice(clock, kind="battery", inverter_model=701, controls=(704,), rated_w=5_000.0,
                           capacity_wh=10_000.0, initial_soc=0.6)
    await dev.start()
    writes: asyncio.Queue[tuple[float, float]] = asyncio.Queue(maxsize=10_000)
    dev.on_write = lambda w: writes.put_nowait((time.perf_counter(), w))
    from gridswarm.keys import derive_ed25519, derive_eth_account, write_ed25519, write_eth_key

    dead = f"http://127.0.0.1:{free_port()}"  # no chain, no coordinator: the site runs on its own
    (tmp / "deployment.json").write_text(json.dumps({"chain_id": 1337, "token": "0x" + "00" * 20,
                                                     "market": "0x" + "00" * 20, "abis": {}}))
    cfg = {"site": "latency-bench", "eth_key_file": str(write_eth_key(tmp / "eth.key", derive_eth_account(9, "b"))),
           "ed25519_key_file": str(write_ed25519(tmp / "ed.key", derive_ed25519(9, "b"))),
           "coordinator_url": dead, "rpc_url": dead, "deployment": str(tmp / "deployment.json"),
           "store_path": str(tmp / "agent.sqlite"), "tick_s": 60.0, "telemetry_every_s": 60.0,
           "reserve_soc": 0.2, "frequency": {"poll_s": poll_s, "min_change_w": 10.0},
           "devices": [{"type": "battery", "driver": "sunspec", "host": "127.0.0.1", "port": dev.port,
                        "writable": True}]}
    (tmp / "site.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "bench.fleet_latency", "--agent", str(tmp / "site.yaml"),
                             "--share", str(share_w)], stdout=open(tmp / "agent.log", "wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    latencies: list[float] = []
    missed = 0
    misses: list[dict[str, Any]] = []
    try:
        # ready once the first control tick wrote its setpoint (the fast path needs one reading)
        await asyncio.wait_for(writes.get(), timeout=120.0)
        await asyncio.sleep(1.0)
        while not writes.empty():
            writes.get_nowait()
        rng = random.Random(1)
        hz = 50.0
        for i in range(steps):
            await asyncio.sleep(rng.uniform(0.3, 0.7))  # a random phase against the agent's poll
            hz = low_hz if hz == 50.0 else 50.0
            while not writes.empty():
                writes.get_nowait()
            seen: list[float] = []
            t0 = time.perf_counter()
            dev.frequency_hz = hz
            want = share_w if hz < 50.0 else 0.0
            try:
                while True:
                    t1, w = await asyncio.wait_for(writes.get(), timeout=2.0)
                    seen.append(round(w, 1))
                    if abs(w - want) <= 0.05 * share_w:
                        latencies.append(t1 - t0)
                        break
            except TimeoutError:
                missed += 1
                misses.append({"step": i, "hz": hz, "last_writes": seen[-3:]})
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()
        await dev.stop()
    ms = sorted(x * 1000 for x in latencies)
    return {
        "benchmark": "frequency step -> storage setpoint written (agent process, SunSpec over Modbus TCP)",
        "product": "GB Dynamic Containment curve: deadband 0.015 Hz, 5 % at 0.2 Hz, 100 % at 0.5 Hz",
        "steps": steps, "measured": len(ms), "missed": missed, "share_w": share_w, "low_hz": low_hz,
        "poll_s": poll_s,
        "latency_ms": {"min": round(ms[0], 1), "p50": round(statistics.median(ms), 1),
                       "p95": round(ms[int(0.95 * (len(ms) - 1))], 1), "max": round(ms[-1], 1)} if ms else None,
        "within_100ms": sum(1 for x in ms if x <= 100.0),
        "misses": misses,
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agent", help=argparse.SUPPRESS)
    ap.add_argument("--share", type=float, default=3000.0)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--low-hz", type=float, default=49.5)
    ap.add_argument("--poll-s", type=float, default=0.05)
    ap.add_argument("--out", default="bench/results/fleet_latency.json")
    a = ap.parse_args(argv)
    if a.agent:
        asyncio.run(_agent_main(a.agent, a.share))
        return
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(a.steps, a.share, a.low_hz, a.poll_s, Path(tmp)))
        if not result["measured"]:
            print((Path(tmp) / "agent.log").read_text()[:4000], file=sys.stderr)
    write_results(a.out, result)
    print(result["latency_ms"], f"{result['within_100ms']}/{result['steps']} within 100 ms, missed {result['missed']}")


if __name__ == "__main__":
    main()
