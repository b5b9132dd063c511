"""The demo report's dashboard figures: read from the coordinator's API (a fake transport
here; tests/system/test_demo_e2e.py reads a real one) and printed."""

from __future__ import annotations

import httpx
import pytest

from app.demo_dashboard import dashboard_figures, print_dashboard

ADDR = "0x" + "ab" * 20
METRICS = """# HELP gridswarm_settlement_latency_seconds x
gridswarm_settlement_latency_seconds_bucket{le="60.0"} 0.0
gridswarm_settlement_latency_seconds_count 4.0
gridswarm_settlement_latency_seconds_sum 1200.0
gridswarm_agent_outbox_pending 3.0
gridswarm_agent_outbox_pending_max 2.0
gridswarm_agents_reporting_outbox 2.0
"""
HORIZON = {"horizon_s": 300.0, "forecasts": 10, "n": 9, "mae_w": 150.4, "mape_pct": 7.25, "bias_w": 3.0,
           "n_interval": 4, "coverage80": 0.75, "coverage95": 1.0}


def _client(fail: bool = False) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        if fail:
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/metrics":
            return httpx.Response(200, text=METRICS)
        return httpx.Response(200, json={"horizons": [HORIZON]})

    return httpx.Client(base_url="http://coordinator", transport=httpx.MockTransport(handler))


def test_figures_are_read_and_printed(capsys: pytest.CaptureFixture[str]) -> None:
    fig = dashboard_figures(_client(), [ADDR])
    assert fig["forecasts"] == {ADDR: [HORIZON]}
    assert fig["metrics"]["gridswarm_settlement_latency_seconds_count"] == 4.0
    assert fig["metrics"]["gridswarm_agent_outbox_pending"] == 3.0
    print_dashboard(fig, {ADDR: "site0"})
    out = capsys.readouterr().out
    assert "site0 demand forecast 5 min ahead: 9 of 10 measured, MAE 150 W, MAPE 7.2 %" in out
    assert "80 % band 75% and the 95 % band 100% (of 4 with a band)" in out
    assert "mean 300 s over 4 intervals" in out and "reported by 2 agents: 3 records (largest 2)" in out


def test_an_unreachable_coordinator_is_said_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    fig = dashboard_figures(_client(fail=True), [ADDR])
    assert "ConnectError" in fig["error"]
    print_dashboard(fig, {})
    assert "dashboard figures incomplete" in capsys.readouterr().out
