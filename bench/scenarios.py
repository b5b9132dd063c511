"""``gridswarm scenario NAME``: fleet scenarios on a real chain with the real coordinator.

``frequency-event``: Ganache started here, the contracts deployed, ``--sites`` participants
registered, the coordinator (with its fleet service) served on 127.0.0.1, and one
:class:`agent.runtime.AgentRuntime` per site in this process, all on one scaled clock. Every
site's grid meter replays the normal-day trace with the loss-of-infeed event (``docs/fleet.md``);
the agents run their own fast paths. A sampler reads each agent's delivered response every
0.05 s (clock) and compares the fleet with GB Dynamic Containment's envelope for the armed shares.
Figures go to ``bench/results/scenarios.json`` (merged by scenario) and a PNG plot.

``unit-faults``: the same event with a fixed fleet requirement; five sites' batteries stop
answering 5 s after the loss and come back at 35 s. Their alarms exclude them, the coordinator
re-sizes the others' shares, and the figures say how much of the requirement the fleet covered
before, during and after, or the shortfall.

This is a benchmark, not a test: nothing here asserts; the figures are written as measured.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SCENARIOS = ("frequency-event", "unit-faults")
FAULTY = (1, 2, 5, 6, 9)  # unit-faults: these sites' batteries stop answering ...
FAULT_AT_S, RECOVER_AT_S = 5.0, 35.0  # ... this long after the loss, and come back
UNIT_FAULTS_REQUIRED_W = 25_000.0  # unit-faults: a fixed requirement the fleet must keep covering
LOSS_AFTER_S = 60.0  # where the loss sits inside the loss-of-infeed trace
RESERVE = 0.3


def _dc_fraction(df: float) -> float:
    from coordinator.services.fleet import dc_fraction

    return dc_fraction(df)


def _site_devices(i: int, rng: random.Random, t0: float, event_ts: float) -> list[dict[str, Any]]:
    cap = rng.choice([5_000.0, 8_000.0, 10_000.0, 13_500.0])
    power = rng.choice([2_500.0, 3_000.0, 5_000.0])
    soc = 0.25 if i % 7 == 3 else rng.uniform(0.35, 0.95)  # some sites sit below their reserve
    trace = {"base": "gb_normal_day", "start_ts": t0, "event": "gb_loss_of_infeed", "event_ts": event_ts}
    return [
        {"type": "battery", "capacity_wh": cap, "max_charge_w": power, "max_discharge_w": power, "initial_soc": soc},
        {"type": "load", "profile": "household", "peak_w": rng.choice([1_500.0, 3_000.0, 5_000.0])},
        {"type": "grid", "frequency_trace": trace},
    ]


async def _frequency_event(n_sites: int, speed: float, work: Path, plot: Path, *,
                           faults: bool = False) -> dict[str, Any]:
    import httpx
    import uvicorn

    from agent.config import AgentConfig
    from agent.devices.frequency_trace import FrequencyTrace
    from agent.runtime import AgentRuntime
    from coordinator.service import create_app
    from coordinator.settings import CoordinatorSettings
    from gridswarm.chain import connect
    from gridswarm.clock import ScaledClock
    from gridswarm.deploy import TOKEN_UNIT, ParticipantSpec, deploy_market, fund_eth, register_participants
    from gridswarm.devnet import Ganache, free_port
    from gridswarm.keys import derive_ed25519, derive_eth_account, write_ed25519, write_eth_key

    rng = random.Random(7)
    ganache = Ganache(log_path=work / "ganache.log").start()
    server = None
    try:
        w3 = connect(ganache.url)
        admin, operator = derive_eth_account(7, "admin"), derive_eth_account(7, "operator")
        for acct in (admin, operator):
            fund_eth(w3, acct.address, 100 * 10**18)
        coord_key = derive_ed25519(7, "coordinator")
        dep = deploy_market(w3, admin, operator, coord_key, clear_timeout_s=3600, settle_timeout_s=3600)
        dep_path = dep.save(work / "deployment.json")
        specs = [ParticipantSpec(derive_eth_account(7, "agent", i), derive_ed25519(7, "agent", i), zone=0,
                                 tokens=100 * TOKEN_UNIT, deposit=10 * TOKEN_UNIT) for i in range(n_sites)]
        register_participants(w3, dep, admin, specs)

        t0 = 1_782_054_000.0
        clock = ScaledClock(sim_start=t0, speed=speed, wall_anchor=time.time())
        event_ts = t0 + 90.0  # the loss itself at t0 + 150 s: time to connect, report and be armed
        loss_ts = event_ts + LOSS_AFTER_S
        port = free_port()
        settings = CoordinatorSettings.model_validate({
            "rpc_url": ganache.url, "deployment": dep_path,
            "operator_key_file": write_eth_key(work / "operator.key", operator),
            "ed25519_key_file": write_ed25519(work / "coordinator.ed25519", coord_key),
            "db_path": work / "coordinator.sqlite", "port": port, "run_market": False, "message_ttl_s": 600.0,
            "fleet": {"enabled": True, "required_fraction": 0.8, "check_s": 2.0, "rearm_s": 20.0, "stale_s": 60.0,
                      "emergency_hold_s": 120.0, **({"required_w": UNIT_FAULTS_REQUIRED_W} if faults else {})}})
        app = create_app(settings, clock=clock)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
        opt_in = {i for i in range(n_sites) if i % 4 == 0}  # a quarter of the owners lend their reserve
        rts = []
        for i, sp in enumerate(specs):
            d = work / f"site{i}"
            d.mkdir()
            cfg = AgentConfig.model_validate({
                "site": f"site{i}", "eth_key_file": write_eth_key(d / "eth.key", sp.account),
                "ed25519_key_file": write_ed25519(d / "ed.key", sp.ed25519), "coordinator_url": base,
                "rpc_url": ganache.url, "deployment": dep_path, "store_path": d / "agent.sqlite", "seed": i,
                "tick_s": 5.0, "telemetry_every_s": 5.0, "reserve_soc": RESERVE, "message_ttl_s": 600.0,
                "trading": {"enabled": False}, "control": {"emergency_opt_in": i in opt_in},
                "frequency": {"poll_s": 0.05}, "devices": _site_devices(i, rng, t0, event_ts)})
            rts.append(AgentRuntime(cfg, clock=clock))
        stop = asyncio.Event()
        tasks = [asyncio.create_task(rt.run(stop)) for rt in rts]
        trace = FrequencyTrace("gb_normal_day", start_ts=t0, event="gb_loss_of_infeed", event_ts=event_ts)
        samples: list[dict[str, Any]] = []
        per_unit: list[list[tuple[float, float, float]]] = [[] for _ in rts]  # (t, required, delivered)
        min_soc = {i: 1.0 for i in range(n_sites)}
        start_soc: dict[int, float] = {}
        try:
            await clock.sleep_until(loss_ts - 10.0)
            for i, rt in enumerate(rts):
                st = rt.site.last_state
                start_soc[i] = st.soc if st is not None and st.soc is not None else float("nan")
            t = loss_ts - 5.0
            faulted = recovered = False
            while t <= loss_ts + 60.0 + 1e-9:
                await clock.sleep_until(t)
                now = clock.now()
                if faults and not faulted and now >= loss_ts + FAULT_AT_S:
                    for i in FAULTY:
                        rts[i].site.drivers["battery1"].inject_fault("timeout")
                    faulted = True
                if faults and not recovered and now >= loss_ts + RECOVER_AT_S:
                    for i in FAULTY:
                        rts[i].site.drivers["battery1"].inject_fault(None)
                    recovered = True
                f = trace.at(now) or 50.0
                req_sum = del_sum = armed_w = 0.0
                for i, rt in enumerate(rts):
                    arm = rt.site.frequency_arm
                    share = arm.p_ref_w if arm is not None and arm.active(now) else 0.0
                    req = share * _dc_fraction(50.0 - f)
                    dw = rt.site.frequency_delivered_w
                    per_unit[i].append((now - loss_ts, req, dw))
                    req_sum, del_sum, armed_w = req_sum + req, del_sum + dw, armed_w + share
                    st = rt.site.last_state
                    if st is not None and st.soc is not None:
                        min_soc[i] = min(min_soc[i], st.soc)
                owed = UNIT_FAULTS_REQUIRED_W * _dc_fraction(50.0 - f)
                samples.append({"t": round(now - loss_ts, 3), "hz": f, "required_w": owed if faults else req_sum,
                                "delivered_w": del_sum, "armed_w": armed_w})
                t += 0.05
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                fleet = (await client.get("/api/v1/fleet")).json()
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if server is not None:
            server.should_exit = True
        ganache.stop()

    def at(sec: float) -> dict[str, Any]:
        s = min(samples, key=lambda x: abs(x["t"] - sec))
        return {"t_s": s["t"], "hz": s["hz"], "required_w": round(s["required_w"], 1),
                "delivered_w": round(s["delivered_w"], 1),
                "share": round(s["delivered_w"] / s["required_w"], 4) if s["required_w"] > 0 else None}

    # each unit's lag: from the envelope asking it for half its share after the loss to the unit
    # delivering half its share (the steep part of the event)
    delays: dict[int, float] = {}
    for i, rows in enumerate(per_unit):
        after = [r for r in rows if r[0] >= 0]
        share = max((r[1] for r in after), default=0.0)
        if share <= 0:
            continue
        t_req = next((r[0] for r in after if r[1] >= 0.5 * share), None)
        t_del = next((r[0] for r in after if r[2] >= 0.5 * share), None)
        if t_req is not None:
            delays[i] = round((t_del if t_del is not None else after[-1][0]) - t_req, 3)
    below_reserve_no_opt_in = [i for i in range(n_sites) if i not in opt_in and start_soc.get(i, 1) >= RESERVE
                               and min_soc[i] < RESERVE - 1e-3]
    low_sites_no_opt_in = [i for i in range(n_sites) if i not in opt_in and start_soc.get(i, 1) < RESERVE]
    touched_low = [i for i in low_sites_no_opt_in if min_soc[i] < start_soc[i] - 1e-4]
    _plot(samples, plot, n_sites, faults=faults)
    if faults:
        def window(a: float, b: float) -> float | None:
            rows = [s for s in samples if a <= s["t"] < b and s["required_w"] > 0]
            req = sum(s["required_w"] for s in rows)
            return round(sum(s["delivered_w"] for s in rows) / req, 4) if req else None

        excl = [e for e in fleet["events"] if e["kind"] in ("excluded", "recovered")]
        first_excl = min((e["ts"] for e in excl if e["kind"] == "excluded"), default=None)
        return {
            "sites": n_sites, "speed": speed, "clock": "scaled (agents in one process, one asyncio loop)",
            "required_w": UNIT_FAULTS_REQUIRED_W, "faulty_sites": list(FAULTY),
            "fault_at_s": FAULT_AT_S, "recover_at_s": RECOVER_AT_S,
            "coverage_definition": "fleet delivered / (required_w x DC curve at the measured frequency), averaged",
            "coverage_before_faults": window(0.5, FAULT_AT_S),
            "coverage_first_10s_of_faults": window(FAULT_AT_S, FAULT_AT_S + 10),
            "coverage_rest_of_faults": window(FAULT_AT_S + 10, RECOVER_AT_S),
            "coverage_after_recovery": window(RECOVER_AT_S + 10, 60.0),
            "excluded_after_fault_s": round(first_excl - (loss_ts + FAULT_AT_S), 3) if first_excl else None,
            "exclusion_events": excl, "shortfall_w_at_end": fleet["service"]["shortfall_w"],
            "mode_events": [e for e in fleet["events"] if e["kind"] == "mode"], "plot": str(plot),
            "series": {"t_s": [s["t"] for s in samples[::2]],
                       "required_w": [round(s["required_w"], 1) for s in samples[::2]],
                       "delivered_w": [round(s["delivered_w"], 1) for s in samples[::2]]},
        }
    return {
        "sites": n_sites, "speed": speed, "clock": "scaled (agents in one process, one asyncio loop)",
        "trace": "gb_loss_of_infeed (synthesised, docs/fleet.md) over gb_normal_day",
        "product": "GB Dynamic Containment envelope: deadband 0.015 Hz, 5 % at 0.2 Hz, 100 % at 0.5 Hz, full in 1 s",
        "armed_w_at_loss": round(next(s["armed_w"] for s in samples if s["t"] >= 0), 1),
        "fleet_available_w": fleet["service"]["available_w"], "fleet_required_w": fleet["service"]["required_w"],
        "nadir_hz": min(s["hz"] for s in samples),
        "at_1s": at(1.0), "at_1s_plus_one_poll": at(1.05), "at_10s": at(10.0),
        "sampling_note": ("the trace steps every 0.1 s and each agent reads it every 0.05 s (clock): a sample just "
                          "after a step still shows most agents on the previous step; at_1s_plus_one_poll is 0.05 s "
                          "later"),
        "delivered_vs_required_over_60s": round(sum(s["delivered_w"] for s in samples if s["t"] >= 0)
                                                / max(1e-9, sum(s["required_w"] for s in samples if s["t"] >= 0)), 4),
        "worst_unit_delay_s": max(delays.values()) if delays else None,
        "median_unit_delay_s": sorted(delays.values())[len(delays) // 2] if delays else None,
        "unit_delay_definition": "from the envelope asking a unit for half its share to the unit delivering it",
        "units_armed": len(delays),
        "reserve": {"opted_in_sites": sorted(opt_in),
                    "sites_above_reserve_without_opt_in_that_went_below_it": below_reserve_no_opt_in,
                    "sites_below_reserve_without_opt_in_that_discharged": touched_low,
                    "untouched_without_opt_in": not below_reserve_no_opt_in and not touched_low},
        "mode_events": [e for e in fleet["events"] if e["kind"] == "mode"],
        "plot": str(plot),
        "series": {"t_s": [s["t"] for s in samples[::2]], "hz": [round(s["hz"], 4) for s in samples[::2]],
                   "required_w": [round(s["required_w"], 1) for s in samples[::2]],
                   "delivered_w": [round(s["delivered_w"], 1) for s in samples[::2]]},
    }


def _plot(samples: list[dict[str, Any]], path: Path, n: int, *, faults: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in samples]
    fig, ax = plt.subplots(figsize=(9, 5))
    label = "DC envelope for the fleet's requirement (kW)" if faults else "DC envelope for the armed shares (kW)"
    ax.plot(t, [s["required_w"] / 1000 for s in samples], label=label, color="k", linestyle="--")
    if faults:
        ax.axvspan(FAULT_AT_S, RECOVER_AT_S, color="tab:orange", alpha=0.15, label=f"{len(FAULTY)} units failed")
    ax.plot(t, [s["delivered_w"] / 1000 for s in samples], label=f"fleet delivered, {n} sites (kW)", color="tab:blue")
    ax.set_xlabel("seconds after the loss of infeed")
    ax.set_ylabel("kW")
    ax2 = ax.twinx()
    ax2.plot(t, [s["hz"] for s in samples], color="tab:red", alpha=0.5, label="grid frequency (Hz)")
    ax2.set_ylabel("Hz")
    fig.legend(loc="lower right")
    ax.set_title(f"{'unit-faults' if faults else 'frequency-event'}: fleet response vs GB Dynamic Containment")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_scenario(name: str, *, sites: int = 20, speed: float = 2.0,
                 out: Path = Path("bench/results")) -> dict[str, Any]:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    from bench.info import machine, write_results

    logging.getLogger("agent").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        plot = out / f"scenario_{name.replace('-', '_')}.png"
        result = asyncio.run(_frequency_event(sites, speed, Path(tmp), plot, faults=name == "unit-faults"))
    result["machine"] = machine()
    path = out / "scenarios.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = result
    write_results(path, data)
    return result
