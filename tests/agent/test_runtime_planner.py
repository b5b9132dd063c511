"""The real agent runtime runs the site planner: forecasts on its own history feed the
flywheel plan and the reserve trigger, in a background task that never blocks the control tick."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from agent.runtime import AgentRuntime
from gridswarm.clock import ScaledClock
from tests.agent.test_runtime import agent_config, chain_market  # noqa: F401 - fixture
from tests.conftest import Market
from tests.support.waiting import wait_until_async

DATACENTRE = [
    {"type": "flywheel", "capacity_wh": 1_500.0, "max_power_w": 6_000.0, "initial_soc": 0.5},
    {"type": "ups", "capacity_wh": 5_000.0, "max_charge_w": 2_000.0, "max_discharge_w": 6_000.0},
    {"type": "load", "profile": "datacentre", "peak_w": 20_000.0},
    {"type": "grid", "import_limit_w": 14_500.0},
]


def test_runtime_forecasts_and_plans_in_the_background(tmp_path: Path, chain_market: Market) -> None:  # noqa: F811
    clock = ScaledClock(sim_start=1_800_000_000.0, speed=900.0)
    cfg = agent_config(tmp_path, chain_market, 0, "http://127.0.0.1:9", rpc_url="http://127.0.0.1:9",
                       chain_check_s=0.5, devices=DATACENTRE, tick_s=5.0)
    rt = AgentRuntime(cfg, clock=clock)
    assert rt.planner is not None and rt.trader.planner is rt.planner

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run(stop))
        try:  # 900x: simulated hours in seconds
            await wait_until_async(
                lambda: (
                    rt.planner.stats.forecast is not None
                    and rt.site.last_state is not None
                    and rt.site.last_state.decision.reserve.activations
                ),
                "a forecast and a reserve activation",
            )
        finally:
            stop.set()
            await task

    asyncio.run(main())
    stats = rt.planner.stats
    assert stats.forecast is not None  # demand forecast 5 and 15 min ahead from its own history
    assert set(stats.forecast["demand"]) == {"300s", "900s"}
    assert rt.site.demand_forecast is not None  # the reserve trigger got its predicted demand
    assert rt.site.last_state.decision.reserve.activations >= 1  # demand above grid + flywheel: reserve started
    summary = json.loads(Path(cfg.store_path).with_suffix(".control.json").read_text())
    assert summary["forecast"]["demand"]["300s"]["upper80_w"] >= summary["forecast"]["demand"]["300s"]["point_w"]


def test_readiness_and_peak_window_come_from_the_config(tmp_path: Path, chain_market: Market) -> None:  # noqa: F811
    clock = ScaledClock(sim_start=1_800_000_000.0, speed=900.0)
    cfg = agent_config(tmp_path, chain_market, 0, "http://127.0.0.1:9", rpc_url="http://127.0.0.1:9",
                       devices=DATACENTRE, planner={"flywheel_readiness": 0.6, "peak_window_s": 2_592_000})
    rt = AgentRuntime(cfg, clock=clock)
    assert rt.planner is not None
    assert rt.planner.readiness_soc == 0.6 and rt.planner.peak.window_s == 2_592_000.0
    asyncio.run(rt.site.connect())
    rt.planner.apply(None, clock.now())  # what the planner task does every step
    assert rt.site.flywheel_plan is not None and rt.site.flywheel_plan[2] == 0.6  # the arbiter's readiness


def test_bad_readiness_is_refused_by_name(tmp_path: Path, chain_market: Market) -> None:  # noqa: F811
    import pytest

    from agent.config import ConfigError

    for bad in (1.5, -0.1, "high"):
        with pytest.raises(ConfigError, match="planner.flywheel_readiness"):
            agent_config(tmp_path, chain_market, 0, "http://127.0.0.1:9", planner={"flywheel_readiness": bad})
    with pytest.raises(ConfigError, match="planner.peak_window_s"):
        agent_config(tmp_path, chain_market, 0, "http://127.0.0.1:9", planner={"peak_window_s": 10})
    with pytest.raises(ConfigError, match="planner.readiness"):
        agent_config(tmp_path, chain_market, 0, "http://127.0.0.1:9", planner={"readiness": 0.5})
