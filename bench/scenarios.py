"""``gridswarm scenario NAME``: fleet scenarios on a real chain with the real coordinator.

Every scenario starts Ganache here, deploys the contracts, registers ``--sites`` participants,
serves the coordinator (with its fleet service) on 127.0.0.1 and runs one agent per site: by
default each a ``gridswarm agent`` process of its own, as the demo runs them (``--in-process``:
:class:`agent.runtime.AgentRuntime` tasks in this process, one asyncio loop), all on one scaled
clock.

``frequency-event``: every site's grid meter replays the normal-day trace with the
loss-of-infeed event (``docs/fleet.md``); the agents run their own fast paths and record every
write (``frequency.record_path``). The fleet at time t is the sum of each unit's last record at
or before t, compared with GB Dynamic Containment's envelope for the armed shares at the trace's
frequency at t, at exactly 1 s and 10 s after the loss and on a 10 ms grid.

``unit-faults`` (agents in this process: it injects the faults into their drivers): the same
event with a fixed fleet requirement; five sites' batteries stop answering 5 s after the loss and
come back at 35 s. Their alarms exclude them, the coordinator re-sizes the others' shares, and
the figures say how much of the requirement the fleet covered before, during and after, or the
shortfall.

``borrowing``: a day in market intervals on a fast clock; six of the sites (two per priority
class) have a small battery at their owner's reserve and a heavy load, and borrow what they lack;
the other fourteen lend. Only the grants trade. The figures: energy requested, granted, refused
and unserved by priority class, the lenders' SoC spread (max - min) over the day, and every
grant reconciled with the chain's fills, their settlement and the lenders' meter readings
(:func:`reconcile_borrowing`). One lender choice per run (``--no-balancing``: fixed order); the
other choice's last run stays beside it in the results and the plot.

Figures go to ``bench/results/scenarios.json`` (merged by scenario) and a PNG plot per scenario.
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

SCENARIOS = ("frequency-event", "unit-faults", "borrowing")
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


class _System:
    """Ganache started here, the market deployed, ``n`` participants registered, the coordinator
    served on 127.0.0.1 in a thread, and the agents: :class:`agent.runtime.AgentRuntime` tasks
    in this process, or (``processes``) one ``gridswarm agent`` process per site, as the demo
    runs them. Everything shares one scaled clock (its three numbers are in every config)."""

    def __init__(self, work: Path, n: int, *, speed: float, sim_start: float, fleet: dict[str, Any],
                 market: dict[str, Any] | None = None, processes: bool = False, seed: int = 7,
                 anchor_delay_s: float = 0.0) -> None:
        self.anchor_delay_s = anchor_delay_s  # wall s from the chain being ready to the clock reaching sim_start
        self.work, self.n, self.speed, self.sim_start = work, n, speed, sim_start
        self.fleet_cfg, self.market_cfg, self.processes, self.seed = fleet, market, processes, seed
        self.ganache: Any = None
        self.server: Any = None
        self.procs: list[Any] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.runtimes: list[Any] = []
        self._stop = asyncio.Event()

    def start(self) -> None:
        import httpx
        import uvicorn

        from app.deploy import TOKEN_UNIT, ParticipantSpec, deploy_seeded_market, register_participants
        from app.devnet import Ganache, free_port
        from coordinator.service import create_app
        from coordinator.settings import CoordinatorSettings
        from gridswarm.chain import connect
        from gridswarm.clock import ScaledClock
        from gridswarm.keys import derive_ed25519, derive_eth_account, write_ed25519, write_eth_key

        work = self.work
        t = time.monotonic()
        self.ganache = Ganache(log_path=work / "ganache.log").start()
        self.w3 = w3 = connect(self.ganache.url)
        admin, operator, coord_key, dep = deploy_seeded_market(w3, self.seed, clear_timeout_s=3600,
                                                               settle_timeout_s=3600)
        self.dep = dep
        self.dep_path = dep.save(work / "deployment.json")
        self.specs = [ParticipantSpec(derive_eth_account(self.seed, "agent", i), derive_ed25519(self.seed, "agent", i),
                                      zone=0, tokens=1_000 * TOKEN_UNIT, deposit=500 * TOKEN_UNIT)
                      for i in range(self.n)]
        register_participants(w3, dep, admin, self.specs)
        self.setup_s = round(time.monotonic() - t, 1)
        logger.warning("chain up, market deployed, %d participants registered in %.1f s", self.n, self.setup_s)
        self.addresses = [sp.account.address for sp in self.specs]
        anchor = time.time() + self.anchor_delay_s
        self.clock = ScaledClock(sim_start=self.sim_start, speed=self.speed, wall_anchor=anchor)
        self.clock_cfg = {"kind": "scaled", "sim_start": self.sim_start, "speed": self.speed, "wall_anchor": anchor}
        port = free_port()
        settings = CoordinatorSettings.model_validate({
            "rpc_url": self.ganache.url, "deployment": self.dep_path,
            "operator_key_file": write_eth_key(work / "operator.key", operator),
            "ed25519_key_file": write_ed25519(work / "coordinator.ed25519", coord_key),
            "db_path": work / "coordinator.sqlite", "port": port, "message_ttl_s": min(3600.0, 600.0 * max(1.0, self.speed / 10)),
            "run_market": self.market_cfg is not None, "index_poll_s": 0.2,
            **({"market": self.market_cfg} if self.market_cfg is not None else {}),
            "fleet": self.fleet_cfg})
        app = create_app(settings, clock=self.clock)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=self.server.run, daemon=True).start()
        self.base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    def agent_config(self, i: int, devices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        from gridswarm.keys import write_ed25519, write_eth_key

        d = self.work / f"site{i}"
        d.mkdir(exist_ok=True)
        sp = self.specs[i]
        return {"site": f"site{i}", "eth_key_file": str(write_eth_key(d / "eth.key", sp.account)),
                "ed25519_key_file": str(write_ed25519(d / "ed.key", sp.ed25519)), "coordinator_url": self.base,
                "rpc_url": self.ganache.url, "deployment": str(self.dep_path), "store_path": str(d / "agent.sqlite"),
                "seed": i, "clock": self.clock_cfg, **extra, "devices": devices}

    def start_agents(self, cfgs: list[dict[str, Any]]) -> None:
        if self.processes:
            import subprocess
            import sys

            import yaml

            for i, cfg in enumerate(cfgs):
                path = self.work / f"site{i}" / "site.yaml"
                path.write_text(yaml.safe_dump(cfg))
                with open(self.work / f"site{i}" / "agent.log", "wb") as log:
                    self.procs.append(subprocess.Popen(
                        [sys.executable, "-m", "app.cli", "agent", "--config", str(path)],
                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            return
        from agent.config import AgentConfig
        from agent.runtime import AgentRuntime

        self.runtimes = [AgentRuntime(AgentConfig.model_validate(c), clock=self.clock) for c in cfgs]
        self.tasks = [asyncio.create_task(rt.run(self._stop)) for rt in self.runtimes]

    async def stop_agents(self) -> None:
        import signal
        import subprocess

        self._stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()

    def close(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.ganache is not None:
            self.ganache.stop()


def _read_records(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


class _Unit:
    """One site's fast-path record as step functions of clock time (``agent/control/fast_path.py``)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        rows = sorted(rows, key=lambda r: r["t"])
        self.t = [r["t"] for r in rows]
        self.rows = rows

    def at(self, t: float, key: str) -> float:
        import bisect

        i = bisect.bisect_right(self.t, t) - 1
        return float(self.rows[i][key]) if i >= 0 else 0.0


async def _frequency_event(n_sites: int, speed: float, work: Path, plot: Path, *,
                           faults: bool = False, processes: bool = False) -> dict[str, Any]:
    import httpx

    from agent.devices.frequency_trace import FrequencyTrace

    rng = random.Random(7)
    t0 = 1_782_054_000.0
    preroll = 180.0 if processes else 90.0  # clock s: agents start, report and are armed before the event
    event_ts = t0 + preroll
    loss_ts = event_ts + LOSS_AFTER_S
    fleet = {"enabled": True, "required_fraction": 0.8, "check_s": 2.0, "rearm_s": 20.0, "stale_s": 60.0,
             "emergency_hold_s": 120.0, **({"required_w": UNIT_FAULTS_REQUIRED_W} if faults else {})}
    sysm = _System(work, n_sites, speed=speed, sim_start=t0, fleet=fleet, processes=processes)
    opt_in = {i for i in range(n_sites) if i % 4 == 0}  # a quarter of the owners lend their reserve
    try:
        sysm.start()
        clock = sysm.clock
        cfgs = [sysm.agent_config(
            i, _site_devices(i, rng, t0, event_ts), tick_s=5.0, telemetry_every_s=5.0, reserve_soc=RESERVE,
            message_ttl_s=600.0, trading={"enabled": False}, control={"emergency_opt_in": i in opt_in},
            frequency={"poll_s": 0.05, "event_poll_s": 0.01, "record_path": str(work / f"site{i}" / "fr.jsonl")})
            for i in range(n_sites)]
        sysm.start_agents(cfgs)
        try:
            await clock.sleep_until(loss_ts - 10.0)
            if faults:
                await clock.sleep_until(loss_ts + FAULT_AT_S)
                for i in FAULTY:
                    sysm.runtimes[i].site.drivers["battery1"].inject_fault("timeout")
                await clock.sleep_until(loss_ts + RECOVER_AT_S)
                for i in FAULTY:
                    sysm.runtimes[i].site.drivers["battery1"].inject_fault(None)
            await clock.sleep_until(loss_ts + 60.5)
            async with httpx.AsyncClient(base_url=sysm.base, timeout=30) as client:
                fleet_view = (await client.get("/api/v1/fleet")).json()
                history = {a: (await client.get(f"/api/v1/fleet/sites/{a}/telemetry",
                                                params={"limit": 2000})).json().get("data", [])
                           for a in sysm.addresses}
        finally:
            await sysm.stop_agents()
    finally:
        sysm.close()

    trace = FrequencyTrace("gb_normal_day", start_ts=t0, event="gb_loss_of_infeed", event_ts=event_ts)
    units = [_Unit(_read_records(work / f"site{i}" / "fr.jsonl")) for i in range(n_sites)]

    def sample(rel: float) -> dict[str, Any]:
        """The fleet at exactly ``rel`` s after the loss, from the units' records."""
        t = loss_ts + rel
        f = trace.at(t) or 50.0
        frac = _dc_fraction(50.0 - f)
        req = sum(u.at(t, "share_w") * frac for u in units)
        dw = sum(u.at(t, "delivered_w") for u in units)
        return {"t": round(rel, 3), "hz": f, "required_w": UNIT_FAULTS_REQUIRED_W * frac if faults else req,
                "delivered_w": dw, "armed_w": sum(u.at(t, "share_w") for u in units)}

    samples = [sample(-5.0 + k * 0.01) for k in range(6501)]

    def at(sec: float) -> dict[str, Any]:
        s = sample(sec)
        return {"t_s": s["t"], "hz": round(s["hz"], 5), "required_w": round(s["required_w"], 1),
                "delivered_w": round(s["delivered_w"], 1),
                "share": round(s["delivered_w"] / s["required_w"], 4) if s["required_w"] > 0 else None}

    # each unit's lag: from the envelope asking it for half its share after the loss to the unit
    # delivering half its share (the steep part of the event), on a 5 ms grid
    delays: dict[int, float] = {}
    for i, u in enumerate(units):
        share = u.at(loss_ts, "share_w")
        if share <= 0:
            continue
        t_req = t_del = None
        for k in range(0, 12_001):
            t = loss_ts + k * 0.005
            if t_req is None and share * _dc_fraction(50.0 - (trace.at(t) or 50.0)) >= 0.5 * share:
                t_req = k * 0.005
            if t_del is None and u.at(t, "delivered_w") >= 0.5 * share:
                t_del = k * 0.005
            if t_req is not None and t_del is not None:
                break
        if t_req is not None:
            delays[i] = round((t_del if t_del is not None else 60.0) - t_req, 3)
    start_soc: dict[int, float] = {}
    min_soc: dict[int, float] = {}
    for i, a in enumerate(sysm.addresses):
        rows = sorted((r for r in history.get(a, []) if r.get("soc") is not None), key=lambda r: r["ts"])
        before = [r["soc"] for r in rows if r["ts"] <= loss_ts - 5.0]
        after = [r["soc"] for r in rows if r["ts"] > loss_ts - 5.0]
        if before:
            start_soc[i] = before[-1]
            min_soc[i] = min([before[-1], *after])
    below_reserve_no_opt_in = [i for i in start_soc if i not in opt_in and start_soc[i] >= RESERVE
                               and min_soc[i] < RESERVE - 1e-3]
    touched_low = [i for i in start_soc if i not in opt_in and start_soc[i] < RESERVE
                   and min_soc[i] < start_soc[i] - 1e-4]
    _plot(samples, plot, n_sites, faults=faults)
    where = ("one gridswarm agent process per site" if processes
             else "agents in one process, one asyncio loop")
    common = {"sites": n_sites, "speed": speed, "clock": f"scaled x{speed:g} ({where})",
              "agents": "processes" if processes else "in-process",
              "measurement": ("each agent records every fast-path write (clock time after the write, response its "
                              "setpoints deliver, armed share); the fleet at time t is the sum of each unit's last "
                              "record at or before t; required = share x DC curve at the trace's frequency at t "
                              "(replayed linearly between its 0.1 s samples)"),
              "fast_path": {"poll_s": 0.05, "event_poll_s": 0.01, "min_change_w": 10.0}}
    if faults:
        def window(a: float, b: float) -> float | None:
            rows = [s for s in samples if a <= s["t"] < b and s["required_w"] > 0]
            req = sum(s["required_w"] for s in rows)
            return round(sum(s["delivered_w"] for s in rows) / req, 4) if req else None

        excl = [e for e in fleet_view["events"] if e["kind"] in ("excluded", "recovered")]
        first_excl = min((e["ts"] for e in excl if e["kind"] == "excluded"), default=None)
        return {
            **common, "required_w": UNIT_FAULTS_REQUIRED_W, "faulty_sites": list(FAULTY),
            "fault_at_s": FAULT_AT_S, "recover_at_s": RECOVER_AT_S,
            "coverage_definition": "fleet delivered / (required_w x DC curve at the grid's frequency), averaged",
            "coverage_before_faults": window(0.5, FAULT_AT_S),
            "coverage_first_10s_of_faults": window(FAULT_AT_S, FAULT_AT_S + 10),
            "coverage_rest_of_faults": window(FAULT_AT_S + 10, RECOVER_AT_S),
            "coverage_after_recovery": window(RECOVER_AT_S + 10, 60.0),
            "excluded_after_fault_s": round(first_excl - (loss_ts + FAULT_AT_S), 3) if first_excl else None,
            "exclusion_events": excl, "shortfall_w_at_end": fleet_view["service"]["shortfall_w"],
            "mode_events": [e for e in fleet_view["events"] if e["kind"] == "mode"], "plot": str(plot),
            "series": {"t_s": [s["t"] for s in samples[::10]],
                       "required_w": [round(s["required_w"], 1) for s in samples[::10]],
                       "delivered_w": [round(s["delivered_w"], 1) for s in samples[::10]]},
        }
    after = [s for s in samples if s["t"] >= 0]
    return {
        **common,
        "trace": "gb_loss_of_infeed (synthesised, docs/fleet.md) over gb_normal_day",
        "product": "GB Dynamic Containment envelope: deadband 0.015 Hz, 5 % at 0.2 Hz, 100 % at 0.5 Hz, full in 1 s",
        "armed_w_at_loss": round(sample(0.0)["armed_w"], 1),
        "fleet_available_w": fleet_view["service"]["available_w"], "fleet_required_w": fleet_view["service"]["required_w"],
        "nadir_hz": round(min(s["hz"] for s in samples), 4),
        "at_1s": at(1.0), "at_10s": at(10.0),
        "min_share_0.5_to_60s": round(min(s["delivered_w"] / s["required_w"] for s in after
                                          if s["t"] >= 0.5 and s["required_w"] > 1.0), 4),
        "delivered_vs_required_over_60s": round(sum(s["delivered_w"] for s in after)
                                                / max(1e-9, sum(s["required_w"] for s in after)), 4),
        "worst_unit_delay_s": max(delays.values()) if delays else None,
        "median_unit_delay_s": sorted(delays.values())[len(delays) // 2] if delays else None,
        "unit_delay_definition": "from the envelope asking a unit for half its share to the unit delivering it",
        "units_armed": len(delays),
        "reserve": {"opted_in_sites": sorted(opt_in),
                    "source": "each site's telemetry (every 5 s) in the coordinator's history",
                    "sites_above_reserve_without_opt_in_that_went_below_it": below_reserve_no_opt_in,
                    "sites_below_reserve_without_opt_in_that_discharged": touched_low,
                    "untouched_without_opt_in": not below_reserve_no_opt_in and not touched_low},
        "mode_events": [e for e in fleet_view["events"] if e["kind"] == "mode"],
        "plot": str(plot),
        "series": {"t_s": [s["t"] for s in samples[::10]], "hz": [round(s["hz"], 4) for s in samples[::10]],
                   "required_w": [round(s["required_w"], 1) for s in samples[::10]],
                   "delivered_w": [round(s["delivered_w"], 1) for s in samples[::10]]},
    }


# ---------------------------------------------------------------------------------- borrowing

DAY_START = 1_782_000_000.0  # 00:00 UTC
BORROW_INTERVAL_S = 14_400.0  # a day in 6 market intervals of 4 h
BORROW_INTERVALS = 6
BORROW_SPEED = 480.0  # a clock day in three minutes of wall time
BORROWERS = {3: "critical", 6: "essential", 9: "flexible", 12: "critical", 15: "essential", 18: "flexible"}
BORROW_PRICE = 80
BORROW_TICK_S = 300.0  # the agents' control tick (clock s): 0.6 s of wall time at x480


def reconcile_borrowing(grants: list[dict[str, Any]], trades: list[dict[str, Any]],
                        readings: dict[tuple[int, str], tuple[int, int]], interval_s: float,
                        settled: set[int]) -> dict[str, Any]:
    """Virtual-battery grants against the chain, per settled interval, to the Wh.

    Per interval: each lender's offer fill must equal what it was granted to lend there, each
    borrower's bid fill what it was granted to borrow, no other fill may appear, the settled
    delivery of each fill must equal the fill, and the lender's signed meter reading (export)
    must cover its fill (the energy it moved). ``readings``: (interval, address) -> (exported Wh,
    imported Wh). Returns totals and every mismatch; ``ok`` only without any."""
    lent: dict[tuple[int, str], int] = {}
    borrowed: dict[tuple[int, str], int] = {}
    outside = 0
    for g in grants:
        k = int(g["start"] // interval_s)
        if k not in settled:
            outside += g["energy_wh"]
            continue
        lent[(k, g["lender"])] = lent.get((k, g["lender"]), 0) + int(g["energy_wh"])
        borrowed[(k, g["borrower"])] = borrowed.get((k, g["borrower"]), 0) + int(g["energy_wh"])
    fills: dict[tuple[int, str, str], dict[str, int]] = {}
    for t in trades:
        k = int(t["interval"])
        if k not in settled:
            continue
        f = fills.setdefault((k, t["owner"], t["side"]), {"qty_wh": 0, "delivered_wh": 0})
        f["qty_wh"] += int(t["qty_wh"])
        f["delivered_wh"] += int(t.get("delivered_wh") or 0)
    mismatches: list[str] = []
    for (k, who), wh in sorted(lent.items()):
        got = fills.get((k, who, "offer"), {"qty_wh": 0})["qty_wh"]
        if got != wh:
            mismatches.append(f"interval {k}: lender {who} granted {wh} Wh, offer filled {got} Wh")
        exported = readings.get((k, who), (0, 0))[0]
        if exported < got:
            mismatches.append(f"interval {k}: lender {who} metered {exported} Wh export for a {got} Wh fill")
    for (k, who), wh in sorted(borrowed.items()):
        got = fills.get((k, who, "bid"), {"qty_wh": 0})["qty_wh"]
        if got != wh:
            mismatches.append(f"interval {k}: borrower {who} granted {wh} Wh, bid filled {got} Wh")
    for (k, who, side), f in sorted(fills.items()):
        if (k, who) not in (lent if side == "offer" else borrowed):
            mismatches.append(f"interval {k}: {side} fill of {f['qty_wh']} Wh by {who} without a grant")
        if f["delivered_wh"] != f["qty_wh"]:
            mismatches.append(f"interval {k}: {side} by {who} settled {f['delivered_wh']} Wh of {f['qty_wh']} Wh")
    offers = [f for (_k, _w, side), f in fills.items() if side == "offer"]
    bids = [f for (_k, _w, side), f in fills.items() if side == "bid"]
    return {
        "ok": not mismatches, "mismatches": mismatches[:50],
        "granted_wh": sum(lent.values()), "offer_filled_wh": sum(f["qty_wh"] for f in offers),
        "bid_filled_wh": sum(f["qty_wh"] for f in bids),
        "settled_delivered_wh": sum(f["delivered_wh"] for f in offers),
        "lenders_metered_export_wh": sum(readings.get(key, (0, 0))[0] for key in lent),
        "granted_wh_in_intervals_not_settled": outside,
    }


def _borrow_devices(i: int, rng: random.Random) -> list[dict[str, Any]]:
    if i in BORROWERS:  # a small battery already at its owner's reserve, a heavy load
        return [{"type": "battery", "capacity_wh": 3_000.0, "max_charge_w": 1_500.0, "max_discharge_w": 1_500.0,
                 "initial_soc": RESERVE},
                {"type": "load", "profile": "household", "peak_w": rng.choice([2_500.0, 3_000.0, 4_000.0])},
                {"type": "grid"}]
    return [{"type": "battery", "capacity_wh": rng.choice([8_000.0, 10_000.0, 13_500.0]),
             "max_charge_w": 5_000.0, "max_discharge_w": 5_000.0, "initial_soc": round(rng.uniform(0.45, 0.95), 3)},
            {"type": "load", "profile": "household", "peak_w": rng.choice([200.0, 300.0, 400.0])},
            {"type": "grid"}]


async def _borrowing_day(n_sites: int, work: Path, *, balance: bool, processes: bool) -> dict[str, Any]:
    import sqlite3

    import httpx

    rng = random.Random(11)
    L = BORROW_INTERVAL_S
    sim_start = DAY_START - 1.5 * L  # agents connected by then: the first interval delivers from 00:00
    market = {"interval_s": L, "gate_lead_s": 5400.0, "meter_wait_s": 3600.0, "intervals": BORROW_INTERVALS + 1,
              "expected_agents": n_sites, "agent_wait_s": 90.0}
    fleet = {"enabled": True, "required_w": 0.0, "check_s": 600.0, "stale_s": 3 * L, "rearm_s": L,
             "borrow_price": BORROW_PRICE, "lender_choice": "highest_soc" if balance else "fixed_order"}
    sysm = _System(work, n_sites, speed=BORROW_SPEED, sim_start=sim_start, fleet=fleet, market=market,
                   processes=processes, anchor_delay_s=30.0 if processes else 10.0)
    soc_series: list[dict[str, Any]] = []
    try:
        sysm.start()
        cfgs = [sysm.agent_config(
            i, _borrow_devices(i, rng), tick_s=BORROW_TICK_S, telemetry_every_s=1800.0, reserve_soc=RESERVE,
            message_ttl_s=3600.0,
            # normal trading is held under the minimum order: only virtual-battery grants trade
            trading={"role": "auto", "max_order_wh": 1, "min_order_wh": 10, "price_jitter": 0},
            frequency={"fast_path": False},
            borrowing={"enabled": i in BORROWERS, "priority": BORROWERS.get(i, "essential"), "max_w": 800.0})
            for i in range(n_sites)]
        sysm.start_agents(cfgs)
        try:
            async with httpx.AsyncClient(base_url=sysm.base, timeout=30) as client:
                deadline = time.monotonic() + 420
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    try:
                        fl = (await client.get("/api/v1/fleet")).json()
                        h = (await client.get("/healthz")).json()
                    except httpx.HTTPError as exc:  # a busy machine: try again
                        logger.warning("polling the coordinator: %r", exc)
                        continue
                    soc_series.append({"t": sysm.clock.now(), "soc": {s["address"]: s["soc"] for s in fl["sites"]
                                                                     if s.get("soc") is not None}})
                    if h["intervals_settled"] + h["intervals_failed"] >= BORROW_INTERVALS + 1:
                        break
                fleet_view = (await client.get("/api/v1/fleet")).json()
                trades = (await client.get("/api/v1/trades", params={"limit": 10000})).json()["data"]
                intervals = (await client.get("/api/v1/intervals", params={"limit": 1000})).json()["data"]
        finally:
            await sysm.stop_agents()
    finally:
        sysm.close()
    db = sqlite3.connect(work / "coordinator.sqlite")
    readings = {(int(k), p): (int(e), int(i)) for k, p, e, i in
                db.execute("select interval, participant, exported_wh, imported_wh from readings")}
    db.close()
    settled = {int(iv["id"]) for iv in intervals if iv.get("status") in ("settled", "SETTLED")
               or iv.get("stage") == "settled"}
    b = fleet_view["borrowing"]
    rec = reconcile_borrowing(b["grants"], trades, readings, L, settled)
    addr_class = {sysm.addresses[i]: c for i, c in BORROWERS.items()}
    by_class: dict[str, dict[str, float]] = {c: {"requested_wh": 0.0, "granted_wh": 0.0, "refused_wh": 0.0,
                                                 "unserved_wh": 0.0, "requests": 0}
                                             for c in ("critical", "essential", "flexible")}
    for r in b["requests"]:
        c = by_class[r["priority"]]
        hours = (r["end"] - r["start"]) / 3600.0
        c["requests"] += 1
        c["requested_wh"] += r["power_w"] * hours
        c["refused_wh" if r["outcome"] == "refused" else "unserved_wh"] += r["unserved_w"] * hours
    for g in b["grants"]:
        by_class[g["priority"]]["granted_wh"] += g["energy_wh"]
    for c in by_class.values():
        for k in ("requested_wh", "refused_wh", "unserved_wh"):
            c[k] = round(c[k])
        c["served_share"] = round(c["granted_wh"] / c["requested_wh"], 3) if c["requested_wh"] else None
    lenders = [a for i, a in enumerate(sysm.addresses) if i not in BORROWERS]
    ran = sorted(int(iv["id"]) for iv in intervals)
    day0 = (ran[0] if ran else DAY_START // L) * L  # the day: the run's intervals, from the first one's start
    day = [row for row in soc_series if day0 <= row["t"] <= day0 + len(ran) * L
           and all(a in row["soc"] for a in lenders)]

    def spread(row: dict[str, Any], who: list[str]) -> float:
        v = [row["soc"][a] for a in who]
        return max(v) - min(v)

    lender_spread = [spread(r, lenders) for r in day]
    return {
        "lender_choice": fleet["lender_choice"], "addr_class": addr_class,
        "granted_wh": sum(g["energy_wh"] for g in b["grants"]), "grants": len(b["grants"]),
        "served_by_priority": by_class, "reconciliation": rec,
        "soc_spread_lenders": {
            "start": round(lender_spread[0], 4) if lender_spread else None,
            "end": round(lender_spread[-1], 4) if lender_spread else None,
            "mean_over_day": round(sum(lender_spread) / len(lender_spread), 4) if lender_spread else None,
            "max_over_day": round(max(lender_spread), 4) if lender_spread else None,
            "samples": len(lender_spread)},
        "lenders_soc_start_end": {a: [round(day[0]["soc"][a], 3), round(day[-1]["soc"][a], 3)]
                                  for a in lenders} if day else {},
        "intervals": {"first": ran[0] if ran else None, "count": len(ran), "settled": len(settled),
                      "day_starts_utc_hour": round((day0 % 86400) / 3600, 2)},
        "series": {"t_h": [round((r["t"] - day0) / 3600.0, 3) for r in day],
                   "spread": [round(x, 4) for x in lender_spread],
                   "min": [round(min(r["soc"][a] for a in lenders), 4) for r in day],
                   "max": [round(max(r["soc"][a] for a in lenders), 4) for r in day]},
    }


def _borrowing(n_sites: int, work: Path, plot: Path, *, balance: bool, processes: bool,
               earlier: dict[str, Any] | None) -> dict[str, Any]:
    """One day with one lender choice; the other choice's day from an earlier run is kept beside it."""
    name = "balancing" if balance else "no_balancing"
    t = time.monotonic()
    run = asyncio.run(_borrowing_day(n_sites, work, balance=balance, processes=processes))
    run["wall_s"] = round(time.monotonic() - t, 1)
    run["agents"] = "processes" if processes else "in-process"
    runs = {k: v for k, v in (earlier or {}).items() if k in ("balancing", "no_balancing") and "series" in v}
    runs[name] = run
    _plot_borrowing(runs, plot)
    out = {
        "sites": n_sites, "borrowers": {str(i): c for i, c in BORROWERS.items()},
        "day": (f"{BORROW_INTERVALS} market intervals of {BORROW_INTERVAL_S / 3600:g} h on a clock scaled "
                f"x{BORROW_SPEED:g}: a clock day in about {86400 / BORROW_SPEED:.0f} s of wall time; agents tick every "
                f"{BORROW_TICK_S:g} s and report every 1800 s (clock)"),
        "price": BORROW_PRICE,
        "what_trades": "only virtual-battery grants (normal trading held below the minimum order)",
        "soc_spread_definition": "max - min SoC over the 14 lending sites (their telemetry), sampled every 0.5 s wall",
        "runs": "gridswarm scenario borrowing [--no-balancing]: one lender choice per run",
        **runs, "plot": str(plot),
    }
    return out


def _plot_borrowing(runs: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for (name, r), color in zip(runs.items(), ("tab:blue", "tab:orange"), strict=False):
        s = r["series"]
        label = r["lender_choice"].replace("_", " ")
        ax.plot(s["t_h"], s["spread"], color=color, label=f"SoC spread (max - min), {label}")
        ax.fill_between(s["t_h"], s["min"], s["max"], color=color, alpha=0.12, label=f"SoC range, {label}")
    ax.axhline(RESERVE, color="k", linestyle=":", label="owners' reserve")
    ax.set_xlabel("hours since the first interval's start (clock)")
    ax.set_ylabel("SoC of the lending sites")
    ax.set_title("borrowing: the fleet's SoC over a day, highest-SoC-first vs fixed-order lending")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


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


def run_scenario(name: str, *, sites: int = 20, speed: float = 2.0, processes: bool = True, balance: bool = True,
                 out: Path = Path("bench/results")) -> dict[str, Any]:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    if name == "unit-faults" and processes:
        raise ValueError("unit-faults injects faults into the agents' drivers: it runs the agents in this process")
    from bench.info import machine, write_results

    logging.getLogger("agent").setLevel(logging.ERROR)
    key = f"{name}@in-process" if not processes and name != "unit-faults" else name
    path = out / "scenarios.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    t = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        suffix = "_in_process" if key != name else ""
        plot = out / f"scenario_{name.replace('-', '_')}{suffix}.png"
        if name == "borrowing":
            result = _borrowing(sites, Path(tmp), plot, balance=balance, processes=processes, earlier=data.get(name))
        else:
            result = asyncio.run(_frequency_event(sites, speed, Path(tmp), plot, faults=name == "unit-faults",
                                                  processes=processes))
    result["wall_s"] = round(time.monotonic() - t, 1)
    result["machine"] = machine()
    data[key] = result
    write_results(path, data)
    return result
