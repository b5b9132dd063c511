"""The dashboard as an operator uses it, in Debian's Chromium driven by Playwright, against
the coordinator of a real `gridswarm demo --serve` run (Ganache, coordinator and four agent
processes): every view loads with data and no console error (the site view's forecast chart
with forecasts its agent sent and the demand it measured), /metrics has the settlement latency
of every settled interval and the agents' outbox backlog, an alarm appears live, a
configuration change reaches an agent, a refused one shows the agent's reason, and a change
without the operator key is refused. Screenshots of each view go to build/screenshots/ (the
copies the README shows are refreshed with GRIDSWARM_SCREENSHOTS=docs/screenshots)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Page, expect, sync_playwright

from gridswarm.clock import ClockConfig
from gridswarm.envelope import Signer
from gridswarm.keys import derive_ed25519, derive_eth_account

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("GRIDSWARM_SCREENSHOTS", ROOT / "build" / "screenshots"))
SEED = 3
VIEWS = ("market", "site", "fleet", "events", "config")


class Demo:
    def __init__(self, proc: subprocess.Popen[str], base: str, key: str, out: Path) -> None:
        self.proc, self.base, self.key, self.out = proc, base, key, out


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/chromium.sh (make test does)")
    out = tmp_path_factory.mktemp("dashboard-demo")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "demo", "--serve", "--intervals", "2", "--seed", str(SEED),
         "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 400
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise AssertionError("demo exited:\n" + "".join(lines[-40:]))
            lines.append(line)
            m = re.match(r"dashboard: (\S+)/\s+\(operator key in (.+)\)", line.strip())
            if m:
                yield Demo(proc, m.group(1), Path(m.group(2)).read_text().strip(), out)
                break
        else:
            raise AssertionError("the demo did not print the dashboard URL:\n" + "".join(lines[-40:]))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _show(page: Page, view: str) -> None:
    page.evaluate(f"location.hash = '#{view}'")
    expect(page.locator("body")).to_have_attribute("data-loaded", view, timeout=20_000)
    page.wait_for_timeout(400)  # chart animations


def _rows(page: Page, table: str) -> int:
    return page.locator(f"#{table} tbody tr:not(:has(td.empty))").count()


def _send_alarm(demo: Demo, site: int, code: str) -> None:
    """A signed alarm with site ``site``'s key, numbered a little ahead of the agent's own messages
    (the agent's next ones are refused as replays and sent again at once, as after any race)."""
    account, key = derive_eth_account(SEED, "agent", site), derive_ed25519(SEED, "agent", site)
    # The demo's clock is simulated and scaled: sign on the very same clock.
    cfg = yaml.safe_load((demo.out / "coordinator" / "coordinator.yaml").read_text())
    clock = ClockConfig.model_validate(cfg["clock"]).build()
    for _ in range(10):
        with sqlite3.connect(demo.out / "coordinator" / "coordinator.sqlite") as conn:
            row = conn.execute("select last_seq from envelope_seq where sender = ?", (account.address,)).fetchone()
        seq = int(row[0]) + 5
        env = Signer(key, account.address, clock, lambda s=seq: s, ttl_s=3600).sign(
            "alarm", {"code": code, "message": f"{code}: cell temperature 61 C above 55 C"}
        )
        r = httpx.post(demo.base + "/api/v1/messages", content=env.to_json(), timeout=10)
        if r.status_code == 200:
            return
        assert r.json()["detail"]["reason"] == "replayed", r.text
    raise AssertionError("the alarm was refused as a replay ten times")


def _metrics(base: str) -> dict[str, float]:
    return {line.split()[0]: float(line.split()[-1]) for line in httpx.get(base + "/metrics", timeout=10).text.splitlines()
            if line and not line.startswith("#")}


def test_operator_dashboard_in_a_real_browser(demo: Demo) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    # /metrics of the demo's coordinator: every settled interval's latency, the agents' backlog
    metrics = _metrics(demo.base)
    settled = httpx.get(demo.base + "/api/v1/market/series", params={"limit": 1000}, timeout=10).json()["data"]
    n_settled = sum(1 for p in settled if p["status"] == "settled")
    assert n_settled > 0 and metrics["gridswarm_settlement_latency_seconds_count"] == n_settled
    assert metrics['gridswarm_settlement_latency_seconds_bucket{le="+Inf"}'] == n_settled
    assert metrics["gridswarm_settlement_latency_seconds_sum"] > 0
    assert metrics["gridswarm_agents_reporting_outbox"] == 4
    assert metrics["gridswarm_agent_outbox_pending"] >= metrics["gridswarm_agent_outbox_pending_max"] >= 0
    assert metrics['gridswarm_messages_accepted_total{kind="forecast"}'] > 0
    # the site with the most energy traded: its view has trades and settlements to show
    sites = httpx.get(demo.base + "/api/v1/sites", timeout=10).json()["data"]
    traded = {s["address"]: httpx.get(f"{demo.base}/api/v1/participants/{s['address']}/summary", timeout=10).json()
              for s in sites}
    busiest = max(traded, key=lambda a: traded[a]["traded_wh"])
    seller = next(a for a in traded if traded[a]["sold_wh"] > 0)  # sellers have a battery to configure
    errors: list[str] = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(demo.base + "/")
        expect(page.locator("#live")).to_have_class(re.compile("on"), timeout=15_000)

        _show(page, "market")
        assert page.locator("#chart-prices canvas").count() == 1
        assert _rows(page, "market-trades") > 0
        expect(page.locator("#market-cards")).to_contain_text("latest price")
        page.screenshot(path=str(SHOTS / "market.png"), full_page=True)

        _show(page, "site")
        page.select_option("#site-select", busiest)
        expect(page.locator("#site-trades tbody tr").first).not_to_contain_text("nothing yet", timeout=15_000)
        expect(page.locator("#site-cards")).to_contain_text("connected")
        assert _rows(page, "site-trades") > 0
        # the site's own demand forecast with its bands against the demand its telemetry measured
        chart = page.locator("#chart-forecast")
        expect(chart).to_have_attribute("data-measured", re.compile(r"^[1-9][0-9]*$"), timeout=15_000)
        points, measured = chart.evaluate("e => [Number(e.dataset.points), Number(e.dataset.measured)]")  # one moment
        assert points >= measured > 0
        assert chart.locator("canvas").count() == 1
        expect(page.locator("#forecast-cards")).to_contain_text("MAE")
        expect(page.locator("#forecast-cards")).to_contain_text("auto:")
        page.wait_for_timeout(400)  # chart animations
        page.screenshot(path=str(SHOTS / "site.png"), full_page=True)

        _show(page, "fleet")
        assert _rows(page, "fleet-sites") == len(sites)
        page.screenshot(path=str(SHOTS / "fleet.png"), full_page=True)

        _show(page, "events")
        before = _rows(page, "events-table")
        _send_alarm(demo, 1, "overtemp")  # arrives through the live stream: no reload
        expect(page.locator("#events-table tbody tr").first).to_contain_text("overtemp", timeout=15_000)
        assert _rows(page, "events-table") >= before + 1  # the demo's agents raise alarms of their own too
        expect(page.locator("#alarm-count")).to_have_text(re.compile(r"^[1-9][0-9]*$"))
        page.screenshot(path=str(SHOTS / "events.png"), full_page=True)

        _show(page, "config")
        page.fill("#operator-key", demo.key)
        page.select_option("#config-site", seller)
        page.fill("input[name=reserve_soc]", "0.45")
        page.click("#config-send")
        expect(page.locator("#config-status")).to_contain_text("applied reserve_soc=0.45", timeout=20_000)
        page.fill("input[name=reserve_soc]", "0.05")
        page.click("#config-send")
        status = page.locator("#config-status")
        expect(status).to_contain_text("refused", timeout=20_000)
        expect(status).to_contain_text("below this site's floor")
        expect(page.locator("#config-history")).to_contain_text("applied")
        page.screenshot(path=str(SHOTS / "config.png"), full_page=True)

        # The operator (key given above) acknowledges the alarm from its row.
        _show(page, "events")
        ours = page.locator("#events-table tbody tr", has_text="overtemp").first
        ours.locator("button[data-ack]").click()
        expect(page.locator("#events-table tbody tr", has_text="overtemp").first).to_contain_text(
            "by operator", timeout=10_000)
        assert errors == [], errors  # every view and action so far: no console error
        _show(page, "config")

        # Without the key the coordinator refuses, and nothing reaches the agent.
        sent = len(httpx.get(demo.base + "/api/v1/events", params={"kind": "config_sent"}, timeout=10).json()["data"])
        page.fill("#operator-key", "")
        page.fill("input[name=reserve_soc]", "0.5")
        page.click("#config-send")
        expect(status).to_contain_text("refused by the coordinator (401)", timeout=10_000)
        expect(status).to_contain_text("operator key required")
        after = len(httpx.get(demo.base + "/api/v1/events", params={"kind": "config_sent"}, timeout=10).json()["data"])
        assert after == sent
        assert all("401" in e for e in errors), errors  # only the refused request's own log line
        browser.close()

    # The agent process itself logged the change it applied and the one it refused.
    agent_logs = "".join(p.read_text() for p in (demo.out / "logs").glob("agent*.log"))
    assert "remote configuration" in agent_logs and "applied" in agent_logs and "refused" in agent_logs
