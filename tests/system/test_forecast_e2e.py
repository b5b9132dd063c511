"""Forecast vs actual and the outbox backlog, end to end: a real agent runtime (simulated PV,
battery and household load; its planner forecasting every 5 simulated minutes) sends its
forecasts and telemetry over a real WebSocket to a running coordinator (real Ganache, real
SQLite); the analytics API pairs each forecast with the demand the site's telemetry measured,
and /metrics shows the backlog the agent reports. The clock runs 300 times faster than wall
time, so 40 simulated minutes take about 8 s."""

from __future__ import annotations

import asyncio
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


def _metric(base: str, name: str) -> float | None:
    for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return None


def test_agent_forecasts_reach_the_analytics_with_their_error(ganache: Ganache, tmp_path: Path) -> None:
    m = deploy_fresh(ganache, n_participants=2)
    settings = write_settings(tmp_path, m, run_market=False, index_poll_s=0.1, message_ttl_s=900.0)
    clock = ScaledClock(sim_start=1_800_000_000.0, speed=300.0)
    with ServerThread(create_app(settings, clock=clock), settings.port) as server:
        cfg = agent_config(tmp_path, m, 0, server.base, message_ttl_s=900.0, trading={"enabled": False})
        rt = AgentRuntime(cfg, clock=clock)
        url = f"{server.base}/api/v1/sites/{rt.address}/forecasts"
        seen: dict[str, object] = {}

        def measured() -> list[dict[str, object]]:
            rows = httpx.get(url, params={"limit": 1000}, timeout=10).json()["data"]
            return [r for r in rows if r["actual_w"] is not None]

        async def main() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(rt.run(stop))

            async def both_horizons() -> bool:
                return {r["horizon_s"] for r in await asyncio.to_thread(measured)} >= {300.0, 900.0}

            try:
                await wait_until_async(both_horizons, "forecasts measured at both horizons", 120, poll_s=0.5)
                seen["backlog"] = await asyncio.to_thread(_metric, server.base, "gridswarm_agents_reporting_outbox")
            finally:
                stop.set()
                await task

        asyncio.run(main())
        rows = httpx.get(url, params={"limit": 1000}, timeout=10).json()["data"]
        done = [r for r in rows if r["actual_w"] is not None]
        assert {r["horizon_s"] for r in done} >= {300.0, 900.0}, rows
        assert rt.planner is not None and rt.planner.on_outlook.sent >= 2  # type: ignore[union-attr]
        for r in done:
            assert r["actual_samples"] > 0 and r["model"].startswith("auto:")
            assert r["error_w"] == round(r["point_w"] - r["actual_w"], 1) or abs(r["error_w"] - (r["point_w"] - r["actual_w"])) < 0.2
            assert r["lower95_w"] <= r["lower80_w"] <= r["upper80_w"] <= r["upper95_w"]
        # the actual is the household load the site's own telemetry reports, not something else
        tel = httpx.get(f"{server.base}/api/v1/sites/{rt.address}/telemetry", params={"limit": 1000}, timeout=10).json()
        r = done[0]
        loads = [-sum(d["power_w"] for d in t["devices"].values() if d["kind"] == "load")
                 for t in tel["data"] if r["target_start"] <= t["ts"] < r["target_end"]]
        assert len(loads) == r["actual_samples"]
        assert abs(sum(loads) / len(loads) - r["actual_w"]) < 0.1
        err = httpx.get(url + "/error", timeout=10).json()
        by_h = {h["horizon_s"]: h for h in err["horizons"]}
        n5 = sum(1 for x in done if x["horizon_s"] == 300.0)
        assert by_h[300.0]["n"] == n5 and by_h[300.0]["mae_w"] is not None
        # coverage is over the forecasts with a band (the forecaster's first ~2 h have none)
        banded = [x for x in done if x["horizon_s"] == 300.0 and x["upper95_w"] > x["lower95_w"]]
        assert by_h[300.0]["n_interval"] == len(banded)
        if banded:
            assert by_h[300.0]["coverage80"] == round(sum(x["in_80"] for x in banded) / len(banded), 4)
        else:
            assert by_h[300.0]["coverage80"] is None and by_h[300.0]["coverage95"] is None
        csv = httpx.get(url, params={"format": "csv"}, timeout=10)
        assert csv.text.splitlines()[0].startswith("series,horizon_s,target_start,target_end")
        assert len(csv.text.splitlines()) == len(rows) + 1
        # the agent reported its outbox backlog with its telemetry
        assert seen["backlog"] == 1.0
        assert _metric(server.base, 'gridswarm_messages_accepted_total{kind="forecast"}') >= 2  # type: ignore[operator]
