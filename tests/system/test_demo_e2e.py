"""The whole loop on a real Ganache node: `gridswarm demo` as a user runs it, checked against the chain."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from app.demo import site_devices
from app.devnet import Ganache, free_port
from gridswarm.chain import Deployment, connect

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_demo_trades_dispatches_meters_and_settles_on_chain(ganache: Ganache, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = _run(
        ["demo", "--rpc-url", ganache.url, "--intervals", "3", "--agents", "4", "--seed", "5", "--out", str(out)],
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert len(report["intervals"]) == 3
    assert all(r["status"] == "settled" for r in report["intervals"])
    assert all(r["settle_tx"] and r["commit_txs"] for r in report["intervals"])
    traded = [r for r in report["intervals"] if r["cleared_volume_wh"]]
    assert traded, "no energy was traded"
    for r in traded:
        assert r["clearing_price"] > 0
        assert r["orders"] >= 2
    sellers = [p for p in report["participants"] if p["role"] == "seller"]
    buyers = [p for p in report["participants"] if p["role"] == "buyer"]
    assert sum(p["sold_wh"] for p in sellers) > 0
    assert sum(p["bought_wh"] for p in buyers) > 0
    # Trades are financial (imbalance settlement): sold/bought are each party's own metered
    # energy, capped at its fills, so each side is at most the traded volume.
    volume = sum(r["cleared_volume_wh"] or 0 for r in report["intervals"])
    assert sum(p["sold_wh"] for p in sellers) <= volume
    assert sum(p["bought_wh"] for p in buyers) <= volume
    assert report["conservation"]["conserved"]
    # the data-centre site's planner: forecasts from its own history, flywheel peaks shaved,
    # bids shaped by the device loop (its battery starts below the low threshold)
    dc = report["site_control"]["site2"]
    assert dc["forecast"] is not None and dc["forecast"]["demand"]["900s"]["upper80_w"] > 0
    assert dc["peaks_shaved"] >= 1 and dc["flywheel_standing_loss_wh"] > 0
    assert dc["orders_shaped"] >= 1 and all(o["side"] == "bid" for o in dc["orders"] if o["shaped"])

    # The report agrees with the chain: balances, statuses and the settlement transactions.
    w3 = connect(ganache.url)
    dep = Deployment.load(out / "deployments" / f"{report['chain_id']}.json")
    market, token = dep.market_contract(w3), dep.token_contract(w3)
    for p in report["participants"]:
        free, locked, *_ = market.functions.accountOf(p["address"]).call()
        assert p["balance_after"] == {
            "wallet": token.functions.balanceOf(p["address"]).call(),
            "market_free": free,
            "market_locked": locked,
        }
        assert locked == 0  # every lock was released at settlement
    for r in report["intervals"]:
        status, *_ = market.functions.intervalOf(r["id"]).call()
        assert status == 4  # Settled
        receipt = w3.eth.get_transaction_receipt(r["settle_tx"])
        assert receipt["status"] == 1
        assert receipt["to"] == dep.market
    # The contract's rules acted: each interval committed one price per zone and a flow per
    # registered link, and buyers' signed readings were used in settlement, not only sellers'.
    priced = market.events.PricesCommitted().get_logs(from_block=dep.block)
    assert {int(e["args"]["interval"]) for e in priced} == {r["id"] for r in report["intervals"]}
    assert all(len(e["args"]["prices"]) == 2 and len(e["args"]["flows"]) == 2 for e in priced)
    signed = {
        a for e in market.events.MeterReadingsAccepted().get_logs(from_block=dep.block) for a in e["args"]["participants"]
    }
    assert {p["address"] for p in buyers} & signed, "no buyer's reading reached settlement"
    assert {p["address"] for p in sellers} & signed
    # Sellers were paid, buyers paid: money moved in the right direction.
    assert sum(p["total_after"] - p["total_before"] for p in sellers) > 0
    assert sum(p["total_after"] - p["total_before"] for p in buyers) < 0
    logs = (out / "logs")
    assert "dispatch" in "".join(f.read_text() for f in logs.glob("agent*.log"))
    # The fleet ran: every site reported per-device state, the storage sites were armed with
    # shares of the response their headroom allows, and the summary printed it.
    fleet = report["fleet"]
    storage = sum(
        1
        for i, role in enumerate(["seller", "seller", "buyer", "buyer"])
        for d in site_devices(role, i)
        if d.type in ("battery", "flywheel", "ups")
    )
    assert fleet["totals"]["sites"] == 4 and fleet["totals"]["storage_devices"] == storage
    assert 0 < fleet["service"]["armed_w"] <= fleet["service"]["available_w"] and fleet["service"]["arms_sent"] >= 2
    assert "frequency response" in proc.stdout and "virtual battery" in proc.stdout
    # Every agent sent its forecasts; the coordinator paired them with measured demand, and
    # /metrics gave a settlement latency for each settled interval and the agents' backlog.
    dash = report["dashboard"]
    assert "error" not in dash, dash
    assert len(dash["forecasts"]) == 4
    for horizons in dash["forecasts"].values():
        five = next(h for h in horizons if h["horizon_s"] == 300.0)
        assert five["n"] > 0 and five["mae_w"] is not None
    m = dash["metrics"]
    assert m["gridswarm_settlement_latency_seconds_count"] == len(report["intervals"])
    assert m["gridswarm_settlement_latency_seconds_sum"] > 0 and m["gridswarm_agents_reporting_outbox"] == 4
    assert "demand forecast 5 min ahead" in proc.stdout and "settlement latency" in proc.stdout


def test_demo_with_unreachable_rpc_fails_fast_naming_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    proc = _run(["demo", "--rpc-url", url, "--out", str(tmp_path / "x")], timeout=60)
    assert proc.returncode != 0
    assert url in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - t0 < 30


def test_help_explains_every_subcommand() -> None:
    proc = _run(["--help"], timeout=60)
    assert proc.returncode == 0
    for cmd in ("demo", "devnet", "deploy", "coordinator", "agent", "clear", "forecast", "bench"):
        assert cmd in proc.stdout
    demo = _run(["demo", "--help"], timeout=60)
    for opt in ("--rpc-url", "--intervals", "--agents", "--seed", "--out"):
        assert opt in demo.stdout
