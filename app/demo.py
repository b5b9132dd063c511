"""``gridswarm demo``: the whole system on one machine.

Starts Ganache (unless ``--rpc-url`` names a running node), deploys, registers participants,
starts the coordinator and N agents as separate OS processes sharing one simulated clock, runs
the given number of delivery intervals through the full lifecycle, writes ``report.json``,
prints a summary, and stops everything it started.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from web3 import Web3

from agent.devices.spec import (
    AnyDevice,
    BatteryConfig,
    FlywheelConfig,
    FrequencyTraceConfig,
    GridConfig,
    LoadConfig,
    PVConfig,
    UPSConfig,
    device_mappings,
)
from app.demo_dashboard import dashboard_figures, print_dashboard
from app.deploy import TOKEN_UNIT, ParticipantSpec, deploy_seeded_market, register_participants
from app.devnet import Ganache, die_with_parent, free_port
from gridswarm.chain import ChainUnavailable, Deployment, connect
from gridswarm.errors import GridSwarmError
from gridswarm.keys import derive_ed25519, derive_eth_account, new_operator_key, write_ed25519, write_eth_key

logger = logging.getLogger(__name__)

# 15:00 UTC on 21 June 2026 is 10:00 in Greensboro NC (the PV profile's TMY3 site): PV is up.
DEFAULT_SIM_START = 1_782_054_000.0
INTERVAL_S = 900.0


class DemoError(GridSwarmError, RuntimeError):
    """The demo could not run; the message says why."""


@dataclass
class DemoOptions:
    rpc_url: str | None = None
    intervals: int = 8
    agents: int = 4
    seed: int = 1
    out: Path = Path("demo-out")
    speed: float = 150.0
    sim_start: float = DEFAULT_SIM_START
    timeout_s: float = 600.0
    serve: bool = False  # keep everything running after the report, for the dashboard


def site_devices(role: str, i: int) -> list[AnyDevice]:
    """Devices of demo site ``i``: sellers have PV and a battery, buyers a household load."""
    if role == "seller":
        return [
            PVConfig(type="pv", peak_w=8_000.0 + 1_000.0 * (i % 3)),
            BatteryConfig(type="battery", capacity_wh=13_500.0, max_charge_w=5_000.0, max_discharge_w=5_000.0,
                          initial_soc=0.7),
            LoadConfig(type="load", profile="household", peak_w=2_500.0),
            GridConfig(type="grid"),
        ]
    if i % 2 == 0:
        return datacentre_devices()
    return [LoadConfig(type="load", profile="household", peak_w=7_000.0 + 500.0 * i), GridConfig(type="grid")]


def datacentre_devices() -> list[AnyDevice]:
    """A small data centre (synthetic rack profile with batch bursts) on a connection sized below
    its bursts: a flywheel shaves them, a UPS is the reserve, a low battery asks for energy. Its
    planner's forecasts drive all three (agent/control/planner.py); the report shows the result."""
    return [
        LoadConfig(type="load", profile="datacentre", peak_w=14_000.0),
        FlywheelConfig(type="flywheel", capacity_wh=600.0, max_power_w=3_000.0, initial_soc=0.5),
        UPSConfig(type="ups", capacity_wh=5_000.0, max_charge_w=2_000.0, max_discharge_w=6_000.0),
        BatteryConfig(type="battery", capacity_wh=5_000.0, max_charge_w=2_500.0, max_discharge_w=2_500.0,
                      initial_soc=0.25),
        GridConfig(type="grid", import_limit_w=10_500.0),
    ]


FREQUENCY_EVENT_AFTER_S = 3600.0  # the loss-of-infeed trace starts this long after sim start


def _with_frequency(devices: list[AnyDevice], sim_start: float) -> list[AnyDevice]:
    """The grid meter replays a normal day with the loss-of-infeed event (``docs/fleet.md``)."""
    trace = FrequencyTraceConfig(base="gb_normal_day", start_ts=sim_start, event="gb_loss_of_infeed",
                                 event_ts=sim_start + FREQUENCY_EVENT_AFTER_S)
    return [d.model_copy(update={"frequency_trace": trace}) if isinstance(d, GridConfig) else d for d in devices]


class Processes:
    """Child processes started by the demo; all are stopped on exit."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                args, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent
            )
        self.children.append((name, proc))
        return proc

    def stop_all(self) -> None:
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc in reversed(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _balances(w3: Web3, dep: Deployment, addresses: list[str]) -> dict[str, dict[str, int]]:
    token = dep.token_contract(w3)
    market = dep.market_contract(w3)
    out = {}
    for a in addresses:
        free, locked, *_ = market.functions.accountOf(a).call()
        wallet = token.functions.balanceOf(a).call()
        out[a] = {"wallet": int(wallet), "market_free": int(free), "market_locked": int(locked)}
    return out


def run_demo(opts: DemoOptions) -> dict[str, Any]:
    if opts.agents < 4:
        raise DemoError("--agents must be at least 4 (two selling sites and two buying sites)")
    if opts.intervals < 1:
        raise DemoError("--intervals must be at least 1")
    out = opts.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("coordinator", "agents", "deployments", "logs", "chain", "report.json"):
        # A fresh chain each run: state left by an earlier run in the same folder must go.
        path = out / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    t_start = time.monotonic()
    procs = Processes()
    ganache: Ganache | None = None
    previous = _stop_on_sigterm()
    try:
        if opts.rpc_url:
            try:
                w3 = connect(opts.rpc_url, timeout_s=5)
            except ChainUnavailable as exc:
                raise DemoError(str(exc)) from exc
            rpc_url = opts.rpc_url
        else:
            # On disk (out/chain), so a node restarted on that folder resumes the demo's chain.
            ganache = Ganache(log_path=out / "logs" / "ganache.log", db_path=out / "chain", die_with_parent=True).start()
            rpc_url = ganache.url
            w3 = connect(rpc_url)
        print(f"chain: {rpc_url} (chain id {w3.eth.chain_id})", flush=True)

        seed = opts.seed
        # The two feeders' links are registered on chain too: the contract checks the flows and
        # zone prices against them (zones.csv below says the same to the coordinator).
        admin, operator, coord_key, dep = deploy_seeded_market(
            w3, seed, clear_timeout_s=3600, settle_timeout_s=3600, links=[(0, 1, 5, 3000), (1, 0, 5, 3000)]
        )
        dep_path = dep.save(out / "deployments" / f"{dep.chain_id}.json")
        print(f"deployed: GridToken {dep.token}, EnergyMarket {dep.market}", flush=True)

        n_sellers = (opts.agents + 1) // 2
        roles = ["seller"] * n_sellers + ["buyer"] * (opts.agents - n_sellers)
        specs = [
            ParticipantSpec(
                derive_eth_account(seed, "agent", i),
                derive_ed25519(seed, "agent", i),
                zone=i % 2,
                tokens=1_000 * TOKEN_UNIT,
                deposit=100 * TOKEN_UNIT,
            )
            for i in range(opts.agents)
        ]
        register_participants(w3, dep, admin, specs)
        participants = [s.account.address for s in specs]
        watched = [*participants, admin.address]  # the admin is the fee recipient
        before = _balances(w3, dep, watched)
        market_before = int(dep.token_contract(w3).functions.balanceOf(dep.market).call())

        clock = {"kind": "scaled", "sim_start": opts.sim_start, "speed": opts.speed, "wall_anchor": time.time()}
        port = free_port()
        cdir = out / "coordinator"
        coord_cfg = {
            "rpc_url": rpc_url,
            "deployment": str(dep_path),
            "operator_key_file": str(write_eth_key(cdir / "operator.key", operator)),
            "ed25519_key_file": str(write_ed25519(cdir / "coordinator.ed25519", coord_key)),
            "db_path": str(cdir / "coordinator.sqlite"),
            "port": port,
            # Envelopes live 10 simulated minutes: 4 s of wall time at the demo's 150x.
            "message_ttl_s": 600.0,
            "clock": clock,
            "frequency_response": {"enabled": True, "droop": 0.04, "deadband_hz": 0.02},
            # fleet services (docs/fleet.md): DC-shaped response sized from telemetry, re-armed
            # each interval; the sites' grid meters replay a loss-of-infeed event an hour in.
            # Borrowed energy: lenders offer at 80/Wh, below the sellers' usual offers, borrowers
            # bid up to 90 (the 5/Wh fee between the feeders needs some surplus), so in the
            # shared auction they meet.
            "fleet": {"enabled": True, "required_fraction": 0.5, "borrow_price": 80, "borrow_bid_margin": 10,
                      "stale_s": 180.0, "check_s": 30.0,
                      "rearm_s": 900.0, "arm_ttl_s": 3600.0, "emergency_hold_s": 300.0},
            "market": {
                "interval_s": INTERVAL_S,
                # Half the interval: 3 s of wall time at 150x for close, clear and commit (about
                # 1-1.5 s on a busy 2-core machine, with three node round trips); 2 s was too tight.
                "gate_lead_s": 450.0,
                "meter_wait_s": 300.0,
                "intervals": opts.intervals,
                "expected_agents": opts.agents,
                "agent_wait_s": 120.0,
            },
        }
        # Two feeders: sites alternate between them; energy crossing pays a grid fee and the
        # link between them carries at most 3 kWh per interval (network-aware clearing).
        (cdir / "zones.csv").write_text(
            "from_zone,to_zone,fee,limit_wh\nfeeder-a,feeder-b,5,3000\nfeeder-b,feeder-a,5,3000\n"
        )
        coord_cfg["market"]["zones"] = {0: "feeder-a", 1: "feeder-b"}  # type: ignore[index]
        coord_cfg["market"]["network_file"] = str(cdir / "zones.csv")  # type: ignore[index]
        # The dashboard's operator key: the coordinator keeps only its hash.
        operator_key, operator_hash = new_operator_key()
        coord_cfg["dashboard"] = {"operator_key_sha256": operator_hash}
        key_file = cdir / "dashboard-operator.key"
        key_file.touch(mode=0o600)
        key_file.write_text(operator_key + "\n")
        (cdir / "coordinator.yaml").write_text(yaml.safe_dump(coord_cfg))
        procs.start(
            "coordinator",
            [sys.executable, "-m", "app.cli", "coordinator", "--config", str(cdir / "coordinator.yaml")],
            out / "logs" / "coordinator.log",
        )
        for i, (spec, role) in enumerate(zip(specs, roles, strict=True)):
            adir = out / "agents" / f"site{i}"
            cfg = {
                "site": f"site{i}-{role}",
                "eth_key_file": str(write_eth_key(adir / "eth.key", spec.account)),
                "ed25519_key_file": str(write_ed25519(adir / "ed25519.key", spec.ed25519)),
                "coordinator_url": f"http://127.0.0.1:{port}",
                "rpc_url": rpc_url,
                "deployment": str(dep_path),
                "store_path": str(adir / "agent.sqlite"),
                "seed": seed * 1000 + i,
                "tick_s": 30.0,
                "telemetry_every_s": 30.0,
                "reserve_soc": 0.3,
                "message_ttl_s": 600.0,
                "clock": clock,
                "trading": {"role": role},
                "devices": device_mappings(_with_frequency(site_devices(role, i), opts.sim_start)),
                "frequency": {"poll_s": 1.0},
                # buying sites have no storage: they borrow from the fleet's batteries (up to 1 kW)
                "borrowing": {"enabled": role == "buyer", "priority": "critical" if i % 2 else "flexible",
                              "max_w": 1000.0},
            }
            (adir / "site.yaml").write_text(yaml.safe_dump(cfg))
            procs.start(
                f"agent{i}",
                [sys.executable, "-m", "app.cli", "agent", "--config", str(adir / "site.yaml")],
                out / "logs" / f"agent{i}.log",
            )
        base = f"http://127.0.0.1:{port}"
        print(f"coordinator: {base}; {opts.agents} agents started; running {opts.intervals} intervals", flush=True)
        health = _wait_until_done(base, procs, opts)
        with httpx.Client(base_url=base, timeout=10) as client:
            intervals = client.get("/api/v1/intervals", params={"limit": 1000}).json()["data"]
            people = {p["address"]: p for p in client.get("/api/v1/participants").json()["data"]}
            trades = client.get("/api/v1/trades", params={"limit": 10000}).json()["data"]
            order_txs = [o["tx"] for iv in intervals for o in client.get(f"/api/v1/intervals/{iv['id']}").json()["orders"]]
            fleet = client.get("/api/v1/fleet").json()
            dashboard = dashboard_figures(client, list(people))  # forecast vs actual, /metrics
        after = _balances(w3, dep, watched)
        market_after = int(dep.token_contract(w3).functions.balanceOf(dep.market).call())
        report = _report(
            w3, dep, opts, intervals, people, trades, order_txs, before, after, market_before, market_after, roles
        )
        report["health"] = health
        report["site_control"] = _site_control(out, len(roles))
        report["fleet"] = _fleet_report(fleet, trades, {int(iv["id"]) for iv in intervals})
        report["wall_seconds"] = round(time.monotonic() - t_start, 1)
        report["dashboard"] = dashboard
        (out / "report.json").write_text(json.dumps(report, indent=2))
        print_dashboard(dashboard, {p.get("address", ""): p.get("site", "") for p in report["participants"]})
        _print_summary(report, out)
        if opts.serve:
            _serve_until_stopped(base, key_file, procs)
        else:
            print("run with --serve to keep the system up and look at the dashboard", flush=True)
        return report
    finally:
        procs.stop_all()
        if ganache:
            ganache.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_on_sigterm() -> Any:
    """SIGTERM ends the demo like Ctrl-C does, through the clean-up that stops every process it
    started (a SIGKILL is covered by the children's parent-death signal). Returns the handler
    it replaced, or None off the main thread, where signals cannot be handled."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


def _serve_until_stopped(base: str, key_file: Path, procs: Processes) -> None:
    """Keep the chain, coordinator and agents up until Ctrl-C or SIGTERM."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    print(f"dashboard: {base}/  (operator key in {key_file})", flush=True)
    print("serving; Ctrl-C stops everything", flush=True)
    try:
        while all(proc.poll() is None for _, proc in procs.children):
            time.sleep(0.5)
        dead = [name for name, proc in procs.children if proc.poll() is not None]
        print(f"stopping: {', '.join(dead)} exited", flush=True)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_until_done(base: str, procs: Processes, opts: DemoOptions) -> dict[str, Any]:
    deadline = time.monotonic() + opts.timeout_s
    health: dict[str, Any] = {}
    last_print = 0
    with httpx.Client(base_url=base, timeout=5) as client:
        while time.monotonic() < deadline:
            for name, proc in procs.children:
                if proc.poll() is not None:
                    raise DemoError(f"{name} exited with code {proc.returncode}; see its log in {opts.out}/logs")
            try:
                health = client.get("/healthz").json()
            except (httpx.HTTPError, ValueError):
                time.sleep(0.3)
                continue
            done = int(health.get("intervals_settled", 0)) + int(health.get("intervals_failed", 0))
            if done != last_print:
                print(f"  intervals settled: {health.get('intervals_settled')}/{opts.intervals}", flush=True)
                last_print = done
            if done >= opts.intervals:
                return health
            time.sleep(0.3)
    raise DemoError(f"the demo did not finish {opts.intervals} intervals within {opts.timeout_s:.0f} s")


def _gas_stats(w3: Web3, intervals: list[dict[str, Any]], order_txs: list[str]) -> dict[str, Any]:
    order_gas = [int(w3.eth.get_transaction_receipt(tx)["gasUsed"]) for tx in order_txs]
    fills = sum(int(i.get("n_fills") or 0) for i in intervals)
    commit = sum(int(i.get("gas_commit") or 0) for i in intervals)
    settle = sum(int(i.get("gas_settle") or 0) for i in intervals)
    return {
        "commit_gas_total": commit,
        "settle_gas_total": settle,
        "fills": fills,
        "commit_gas_per_fill": round(commit / fills) if fills else None,
        "settle_gas_per_fill": round(settle / fills) if fills else None,
        "orders": len(order_gas),
        "order_gas_mean": round(sum(order_gas) / len(order_gas)) if order_gas else None,
        "order_gas_max": max(order_gas) if order_gas else None,
    }


def _report(
    w3: Web3,
    dep: Deployment,
    opts: DemoOptions,
    intervals: list[dict[str, Any]],
    people: dict[str, dict[str, Any]],
    trades: list[dict[str, Any]],
    order_txs: list[str],
    before: dict[str, dict[str, int]],
    after: dict[str, dict[str, int]],
    market_before: int,
    market_after: int,
    roles: list[str],
) -> dict[str, Any]:
    rows = []
    for iv in intervals:
        rows.append(
            {
                "id": iv["id"],
                "status": iv["status"],
                "delivery_start": iv["delivery_start"],
                "clearing_price": iv["clearing_price"],
                "zone_prices": iv["zone_prices"],
                "grid_fee_revenue": iv["fee_revenue"],
                "cleared_volume_wh": iv["volume_wh"],
                "orders": iv["n_orders"],
                "fills": iv["n_fills"],
                "traded_fills": sum(1 for t in trades if t["interval"] == iv["id"]),
                "delivered_wh": iv["delivered_wh"],
                "shortfall_wh": iv["shortfall_wh"],
                "commit_txs": iv["commit_txs"],
                "settle_tx": iv["settle_tx"],
                "gas_commit": iv["gas_commit"],
                "gas_settle": iv["gas_settle"],
            }
        )
    participants = []
    for i, (addr, role) in enumerate(zip(list(before)[: len(roles)], roles, strict=True)):
        p = people.get(addr, {})
        participants.append(
            {
                "site": f"site{i}",
                "role": role,
                "address": addr,
                "sold_wh": p.get("sold_wh", 0),
                "bought_wh": p.get("bought_wh", 0),
                "balance_before": before[addr],
                "balance_after": after[addr],
                "total_before": sum(before[addr].values()),
                "total_after": sum(after[addr].values()),
            }
        )
    fee = list(before)[-1]
    total_before = sum(b["wallet"] for b in before.values()) + market_before
    total_after = sum(b["wallet"] for b in after.values()) + market_after
    internal_after = sum(b["market_free"] + b["market_locked"] for b in after.values())
    return {
        "chain_id": dep.chain_id,
        "contracts": {"GridToken": dep.token, "EnergyMarket": dep.market},
        "seed": opts.seed,
        "intervals": rows,
        "participants": participants,
        "fee_recipient": {"address": fee, "balance_before": before[fee], "balance_after": after[fee]},
        "conservation": {
            "wallets_plus_market_before": total_before,
            "wallets_plus_market_after": total_after,
            "market_token_balance": market_after,
            "sum_of_internal_balances": internal_after,
            "conserved": total_before == total_after and internal_after == market_after,
        },
        "gas": _gas_stats(w3, intervals, order_txs),
    }


def _site_control(out: Path, n: int) -> dict[str, Any]:
    """Each agent's local-control summary (written by its planner beside its store)."""
    sites = {}
    for i in range(n):
        path = out / "agents" / f"site{i}" / "agent.control.json"
        try:
            sites[f"site{i}"] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return sites


def _fleet_report(fleet: dict[str, Any], trades: list[dict[str, Any]], ran: set[int]) -> dict[str, Any]:
    """The fleet's part of the report: its service, exclusions, events and frequency events."""
    return {
        "mode": fleet["mode"],
        "service": fleet["service"],
        "totals": fleet["totals"],
        "sites": [{k: s[k] for k in ("address", "soc", "max_rate_w", "share_w", "frequency_hz", "response_w",
                                     "excluded")} for s in fleet["sites"]],
        "excluded": fleet["excluded"],
        "events": fleet["events"],
        "frequency_events": fleet["frequency_events"],
        "virtual_battery": _borrowing(fleet.get("borrowing", {}), trades, ran),
    }


def _borrowing(b: dict[str, Any], trades: list[dict[str, Any]], ran: set[int]) -> dict[str, Any]:
    """Virtual-battery grants and the on-chain fills that settle them. Per interval, a lender's
    offer fill should equal what it lent there and a borrower's bid fill what it borrowed
    (``reconciled``); grants for an interval after the run's last are counted apart."""
    fills = {(t["interval"], t["owner"], t["side"]): t for t in trades}
    lent: dict[tuple[int, str], int] = {}
    borrowed: dict[tuple[int, str], int] = {}
    rows = []
    for g in b.get("grants", []):
        k = int(g["start"] // INTERVAL_S)
        lent[(k, g["lender"])] = lent.get((k, g["lender"]), 0) + g["energy_wh"]
        borrowed[(k, g["borrower"])] = borrowed.get((k, g["borrower"]), 0) + g["energy_wh"]
        rows.append({**g, "interval": k})
    for r in rows:
        k = r["interval"]
        offer, bid = fills.get((k, r["lender"], "offer")), fills.get((k, r["borrower"], "bid"))
        r["offer_fill_wh"] = offer["qty_wh"] if offer else 0
        r["bid_fill_wh"] = bid["qty_wh"] if bid else 0
        r["trade_price"] = offer["price"] if offer else None
        r["delivered_wh"] = offer.get("delivered_wh") if offer else None
        r["reconciled"] = (r["offer_fill_wh"] == lent[(k, r["lender"])]
                           and r["bid_fill_wh"] == borrowed[(k, r["borrower"])])
    for r in rows:
        r["after_the_run"] = r["interval"] not in ran
    return {"price": b.get("price"), "grants": rows, "granted_wh": sum(g["energy_wh"] for g in rows),
            "reconciled": sum(1 for r in rows if r["reconciled"]),
            "after_the_run": sum(1 for r in rows if r["after_the_run"])}


def _print_fleet(f: dict[str, Any]) -> None:
    sv, tot = f["service"], f["totals"]
    print()
    print(f"fleet: mode {f['mode']}; {tot['sites_in_service']}/{tot['sites']} sites in service, "
          f"{tot['storage_devices']} storage devices, {tot['usable_wh'] / 1000:.1f} kWh above owners' reserves")
    print(f"  frequency response ({sv['product']}: deadband +-{sv['deadband_hz']} Hz, full at +-{sv['full_hz']} Hz): "
          f"available {sv['available_w']:.0f} W, required {sv['required_w']:.0f} W, armed {sv['armed_w']:.0f} W, "
          f"shortfall {sv['shortfall_w']:.0f} W, {sv['arms_sent']} signed arms sent")
    for ev in f["frequency_events"]:
        share = ev["peak_delivered_w"] / ev["peak_expected_w"] if ev["peak_expected_w"] else None
        print(f"  frequency event at {ev['start_ts']:.0f}: min {ev['min_hz']:.3f} Hz; at the deepest reading the "
              f"fleet delivered {ev['peak_delivered_w']:.0f} W of {ev['peak_expected_w']:.0f} W the DC curve asks "
              f"for its shares ({'-' if share is None else f'{share:.0%}'}), {ev['sites_responding']} sites responding")
    if not f["frequency_events"]:
        print("  no frequency event measured during the run")
    for ex in f["excluded"]:
        print(f"  excluded: {ex['address']} {ex['device'] or '(site)'}: {'; '.join(ex['reasons'])}")
    vb = f["virtual_battery"]
    print(f"  virtual battery: {len(vb['grants'])} grants, {vb['granted_wh']} Wh lent at {vb['price']}/Wh; "
          f"{vb['reconciled']} reconciled with the lender's offer and the borrower's bid filled on chain, "
          f"{vb['after_the_run']} for an interval after the run")
    for g in vb["grants"][:10]:
        print(f"    interval {g['interval']}: {g['lender'][:10]} -> {g['borrower'][:10]} {g['energy_wh']} Wh "
              f"({g['priority']}); chain: offer {g['offer_fill_wh']} Wh, bid {g['bid_fill_wh']} Wh at "
              f"{g['trade_price']}, delivered {g['delivered_wh']}")
    for ev in f["events"]:
        if ev["kind"] in ("borrow_refused", "borrow_unserved"):
            print(f"    {ev['kind']}: {ev['address'][:10]}: {ev['message']}")


def _print_summary(report: dict[str, Any], out: Path) -> None:
    print()
    print(f"{'interval':>10} {'status':>8} {'price':>6} {'volume Wh':>10} {'delivered':>10} {'orders':>6} {'fills':>5}")
    for r in report["intervals"]:
        print(
            f"{r['id']:>10} {r['status'] or '-':>8} {r['clearing_price'] if r['clearing_price'] is not None else '-':>6} "
            f"{r['cleared_volume_wh'] or 0:>10} {r['delivered_wh'] or 0:>10} {r['orders'] or 0:>6} {r['traded_fills']:>5}"
        )
    print()
    print(f"{'site':<6} {'role':<7} {'address':<42} {'sold Wh':>8} {'bought Wh':>9} {'tokens before':>14} {'after':>14}")
    for p in report["participants"]:
        print(
            f"{p['site']:<6} {p['role']:<7} {p['address']:<42} {p['sold_wh']:>8} {p['bought_wh']:>9} "
            f"{p['total_before'] / 1e6:>14.6f} {p['total_after'] / 1e6:>14.6f}"
        )
    print()
    for site, sc in report.get("site_control", {}).items():
        if not (sc.get("peaks_shaved") or sc.get("reserve_activations") or sc.get("orders_shaped")
                or sc.get("precharges")):
            continue
        print(f"{site}: predicted peaks {sc['spikes_predicted']}, flywheel pre-charges {sc['precharges']} "
              f"(none needed when already at readiness), peaks shaved {sc['peaks_shaved']} "
              f"({sc['peak_shaved_wh']:.0f} Wh), reserve activations {sc['reserve_activations']}, "
              f"orders shaped by the device loop {sc['orders_shaped']}, flywheel wear {sc['flywheel_cycles']:.2f} "
              f"cycles / {sc['flywheel_standing_loss_wh']:.0f} Wh standing losses")
    c = report["conservation"]
    g = report["gas"]
    print()
    print(f"value conserved: {c['conserved']} (wallets + market: {c['wallets_plus_market_before']} -> "
          f"{c['wallets_plus_market_after']} base units)")
    print(f"gas per order: {g['order_gas_mean']} (mean of {g['orders']}), per committed fill: "
          f"{g['commit_gas_per_fill']}, per settled fill: {g['settle_gas_per_fill']}")
    if report.get("fleet"):
        _print_fleet(report["fleet"])
    print(f"report: {out / 'report.json'}  (wall time {report['wall_seconds']} s)")
