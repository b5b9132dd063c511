"""Footprint of the real agent process: ``python scripts/bench_agent_process.py``.

Everything a site owner runs: Ganache with the contracts deployed, the coordinator (its own
process), a simulated SunSpec battery inverter on a real Modbus TCP port (served by this
harness), and ``gridswarm agent`` as a child process with that SunSpec battery plus sim PV,
load, flywheel and grid, its WebSocket link, SQLite store, trader, forecaster and planner, on
the wall clock at a 100 ms control tick. The coordinator runs its market on its own schedule
(15-minute intervals) so the agent trades if the run is long enough.

Measured on the agent process only, from ``/proc``: peak RSS (``VmHWM``, whole life including
imports) and CPU share of one core (user + system time over the measured wall time, after a
warm-up). Written to ``bench/results/agent_process.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from bench.info import machine, write_results
from bench.proc import status_kb

TARGETS = {"peak_rss_mb": 100.0, "cpu_share_of_core": 0.05}


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _serve_sunspec(ready: threading.Event, box: dict[str, Any], stop: threading.Event) -> None:
    from agent.drivers.sunspec_sim import SunSpecSimDevice
    from gridswarm.clock import WallClock

    async def main() -> None:
        dev = SunSpecSimDevice(WallClock(), kind="battery")
        await dev.start()
        box["port"] = dev.port
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        await dev.stop()

    asyncio.run(main())


def run(seconds: float, warmup_s: float, tick_s: float, out_dir: Path) -> dict[str, Any]:
    from app.deploy import TOKEN_UNIT, ParticipantSpec, deploy_market, fund_eth, register_participants
    from app.devnet import Ganache, free_port
    from gridswarm.keys import derive_ed25519, derive_eth_account, write_ed25519, write_eth_key

    out_dir.mkdir(parents=True, exist_ok=True)
    ganache = Ganache(log_path=out_dir / "ganache.log").start()
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    try:
        from gridswarm.chain import connect

        w3 = connect(ganache.url)
        admin, operator = derive_eth_account(9, "admin"), derive_eth_account(9, "operator")
        for acct in (admin, operator):
            fund_eth(w3, acct.address, 100 * 10**18)
        coord_key = derive_ed25519(9, "coordinator")
        dep = deploy_market(w3, admin, operator, coord_key, clear_timeout_s=3600, settle_timeout_s=3600)
        dep_path = dep.save(out_dir / "deployment.json")
        me = ParticipantSpec(derive_eth_account(9, "agent", 0), derive_ed25519(9, "agent", 0), zone=0,
                             tokens=1_000 * TOKEN_UNIT, deposit=100 * TOKEN_UNIT)
        register_participants(w3, dep, admin, [me])

        port = free_port()
        coord = {
            "rpc_url": ganache.url, "deployment": str(dep_path),
            "operator_key_file": str(write_eth_key(out_dir / "operator.key", operator)),
            "ed25519_key_file": str(write_ed25519(out_dir / "coordinator.ed25519", coord_key)),
            "db_path": str(out_dir / "coordinator.sqlite"), "port": port,
            "market": {"interval_s": 900.0, "gate_lead_s": 300.0, "meter_wait_s": 300.0,
                       "expected_agents": 1, "agent_wait_s": 60.0},
        }
        (out_dir / "coordinator.yaml").write_text(yaml.safe_dump(coord))
        with open(out_dir / "coordinator.log", "wb") as fh:
            procs.append(subprocess.Popen([sys.executable, "-m", "app.cli", "coordinator", "--config",
                                           str(out_dir / "coordinator.yaml")], stdout=fh, stderr=subprocess.STDOUT))

        ready: threading.Event = threading.Event()
        box: dict[str, Any] = {}
        threading.Thread(target=_serve_sunspec, args=(ready, box, stop), daemon=True).start()
        if not ready.wait(30):
            raise RuntimeError("the SunSpec simulator did not start")
        site = {
            "site": "bench", "eth_key_file": str(write_eth_key(out_dir / "agent.key", me.account)),
            "ed25519_key_file": str(write_ed25519(out_dir / "agent.ed25519", me.ed25519)),
            "coordinator_url": f"http://127.0.0.1:{port}", "rpc_url": ganache.url, "deployment": str(dep_path),
            "store_path": str(out_dir / "agent.sqlite"), "tick_s": tick_s, "telemetry_every_s": 5.0,
            "devices": [
                {"id": "battery", "type": "battery", "driver": "sunspec", "host": "127.0.0.1", "port": box["port"]},
                {"type": "pv", "peak_w": 6_000.0},
                {"type": "load", "profile": "datacentre", "peak_w": 8_000.0},
                {"type": "flywheel", "capacity_wh": 1_000.0, "max_power_w": 4_000.0},
                {"type": "grid", "import_limit_w": 7_000.0},
            ],
        }
        (out_dir / "site.yaml").write_text(yaml.safe_dump(site))
        with open(out_dir / "agent.log", "wb") as fh:
            agent = subprocess.Popen([sys.executable, "-m", "app.cli", "agent", "--config",
                                      str(out_dir / "site.yaml")], stdout=fh, stderr=subprocess.STDOUT)
        procs.append(agent)
        time.sleep(warmup_s)
        if agent.poll() is not None:
            raise RuntimeError(f"the agent exited ({agent.returncode}); see {out_dir / 'agent.log'}")
        cpu0, t0 = _proc_cpu_s(agent.pid), time.monotonic()
        time.sleep(seconds)
        if agent.poll() is not None:
            raise RuntimeError(f"the agent exited ({agent.returncode}); see {out_dir / 'agent.log'}")
        cpu1, t1 = _proc_cpu_s(agent.pid), time.monotonic()
        peak_kb, rss_kb = status_kb(agent.pid, "VmHWM"), status_kb(agent.pid, "VmRSS")
        summary = out_dir / "agent.control.json"
        import json

        control = json.loads(summary.read_text()) if summary.exists() else None
        return {
            "tick_s": tick_s, "measured_s": round(t1 - t0, 1), "warmup_s": warmup_s,
            "cpu_share_of_core": round((cpu1 - cpu0) / (t1 - t0), 4),
            "peak_rss_mb": round(peak_kb / 1024, 1), "rss_at_end_mb": round(rss_kb / 1024, 1),
            "forecast_ready": bool(control and control.get("forecast")),
            "targets": TARGETS,
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        stop.set()
        ganache.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_agent_process", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="measured wall time (after the warm-up)")
    ap.add_argument("--warmup", type=float, default=20.0)
    ap.add_argument("--tick-ms", type=float, default=100.0)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/gridswarm-bench-agent-process"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/agent_process.json"))
    args = ap.parse_args(argv)
    res = run(args.seconds, args.warmup, args.tick_ms / 1000.0, args.workdir)
    write_results(args.out, {"command": "python scripts/bench_agent_process.py " + " ".join(argv or sys.argv[1:]),
                             "machine": machine(), **res})
    print(res)
    return 0
