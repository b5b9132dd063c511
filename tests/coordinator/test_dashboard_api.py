"""The analytics, event-log and remote-configuration API on a running coordinator (real
Ganache, real sockets): bad input gets a 4xx with a reason, changes need the operator key,
alarms from agents reach the log and the live stream, and a configuration change reaches a
real agent runtime, which applies it or refuses it with its reason."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.runtime import AgentRuntime
from app.devnet import Ganache, free_port
from coordinator.service import create_app
from gridswarm.clock import ScaledClock
from gridswarm.envelope import Signer
from gridswarm.keys import new_operator_key
from tests.agent.test_runtime import ServerThread, agent_config
from tests.conftest import Market, deploy_fresh
from tests.coordinator.conftest import write_settings
from tests.support.waiting import healthy, wait_until

ADDR = "0x" + "ab" * 20


class Running:
    def __init__(self, base: str, market: Market, key: str, clock: ScaledClock, settings: object) -> None:
        self.base, self.market, self.key, self.clock, self.settings = base, market, key, clock, settings

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}


@pytest.fixture(scope="module")
def running(ganache: Ganache, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("dashboard")
    m = deploy_fresh(ganache)
    key, digest = new_operator_key()
    settings = write_settings(
        tmp, m, run_market=False, index_poll_s=0.1, message_ttl_s=900.0, dashboard={"operator_key_sha256": digest}
    )
    clock = ScaledClock(sim_start=1_800_000_000.0, speed=10.0)
    with ServerThread(create_app(settings, clock=clock), settings.port) as server:
        yield Running(server.base, m, key, clock, settings)


BAD_GETS = [
    ("/api/v1/market/series?limit=0", 422),
    ("/api/v1/market/series?limit=100000", 422),
    ("/api/v1/market/series?limit=abc", 422),
    ("/api/v1/market/series?since=-1", 422),
    ("/api/v1/market/series?since=nan", 422),
    ("/api/v1/market/series?since=1e300", 422),
    ("/api/v1/market/series?since=20&until=10", 400),
    ("/api/v1/market/series?cursor=notacursor", 400),
    ("/api/v1/market/series?cursor=%00%01", 422),
    ("/api/v1/market/series?format=xml", 422),
    ("/api/v1/market/depth?interval=99999999", 404),
    ("/api/v1/market/depth?interval=99999999999999999999999", 422),
    ("/api/v1/market/trades?owner=nobody", 422),
    ("/api/v1/market/trades?interval=-3", 422),
    (f"/api/v1/participants/{ADDR}/summary", 404),
    ("/api/v1/participants/0x12/summary", 422),
    (f"/api/v1/participants/{ADDR}/intervals?tariff_import=-1", 422),
    (f"/api/v1/sites/{ADDR}/telemetry", 404),
    (f"/api/v1/sites/{ADDR}/forecasts", 404),
    (f"/api/v1/sites/{ADDR}/forecasts/error", 404),
    ("/api/v1/sites/0x12/forecasts", 422),
    (f"/api/v1/sites/{ADDR}/forecasts?series=wind", 422),
    (f"/api/v1/sites/{ADDR}/forecasts?horizon_s=0", 422),
    (f"/api/v1/sites/{ADDR}/forecasts?horizon_s=nan", 422),
    (f"/api/v1/sites/{ADDR}/forecasts?limit=5000", 422),
    (f"/api/v1/sites/{ADDR}/forecasts/error?until=-5", 422),
    ("/api/v1/events?kind=party", 422),
    ("/api/v1/events?cursor=WyJtYXJrZXQiLDFd", 400),
    ("/api/v1/events/stream?after=-1", 422),
    ("/api/v1/events/stream?max_seconds=0", 422),
    ("/assets/nothing.js", 404),
]


@pytest.mark.parametrize(("path", "status"), BAD_GETS)
def test_bad_input_gets_a_4xx_with_a_reason(running: Running, path: str, status: int) -> None:
    r = httpx.get(running.base + path, timeout=10)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_lists_answer_in_json_and_csv(running: Running) -> None:
    addr = running.market.participants[0].account.address
    for path in ("/api/v1/market/series", "/api/v1/market/trades", f"/api/v1/participants/{addr}/intervals",
                 f"/api/v1/sites/{addr}/telemetry", f"/api/v1/sites/{addr}/forecasts", "/api/v1/events"):
        assert httpx.get(running.base + path, timeout=10).json()["next_cursor"] is None
        r = httpx.get(running.base + path, params={"format": "csv"}, timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "," in r.text.splitlines()[0]
    summary = httpx.get(running.base + f"/api/v1/participants/{addr}/summary", timeout=10).json()
    assert summary["saving"] == 0 and summary["tariff"] == {"import_price": 300, "export_price": 80}
    for bad in ({"since": 20, "until": 10}, {"cursor": "WyJtYXJrZXQiLDFd"}):  # backwards range, another list's cursor
        r = httpx.get(running.base + f"/api/v1/sites/{addr}/forecasts", params=bad, timeout=10)
        assert r.status_code == 400 and r.json()["detail"], r.text
    err = httpx.get(running.base + f"/api/v1/sites/{addr}/forecasts/error", timeout=10).json()
    assert err["horizons"] == [] and err["series"] == "demand"
    sites = httpx.get(running.base + "/api/v1/sites", timeout=10).json()
    assert sites["count"] == len(running.market.participants)


def _metric(base: str, line_start: str) -> float:
    text = httpx.get(base + "/metrics", timeout=10).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(line_start)]
    return values[0] if values else 0.0


def test_metrics_count_what_happens(running: Running) -> None:
    refused = 'gridswarm_messages_refused_total{reason="unsigned"}'
    before = _metric(running.base, refused)
    assert httpx.post(running.base + "/api/v1/messages", content=b"{}", timeout=10).status_code == 400
    assert _metric(running.base, refused) == before + 1
    alarms = 'gridswarm_messages_accepted_total{kind="alarm"}'
    before = _metric(running.base, alarms)
    assert _alarm(running, "meter-drift").status_code == 200
    assert _metric(running.base, alarms) == before + 1


def test_page_assets_and_metrics_are_served(running: Running) -> None:
    page = httpx.get(running.base + "/", timeout=10)
    assert page.status_code == 200 and "/assets/echarts.min.js" in page.text
    for asset in ("echarts.min.js", "app.js", "style.css"):
        assert httpx.get(running.base + f"/assets/{asset}", timeout=10).status_code == 200
    metrics = httpx.get(running.base + "/metrics", timeout=10)
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "gridswarm_agents_connected" in metrics.text and "gridswarm_messages_accepted_total" in metrics.text
    schema = httpx.get(running.base + "/openapi.json", timeout=10).json()
    assert "examples" in json.dumps(schema["components"]["schemas"]["MarketSeries"])
    # no fleet service on this coordinator: the page's fleet source says so with a 200
    assert httpx.get(running.base + "/api/v1/dashboard/fleet", timeout=10).json() == {"available": False}


def _alarm(running: Running, code: str, **extra: object) -> httpx.Response:
    p = running.market.participants[1]
    seq = int(time.time() * 1000)
    signer = Signer(p.ed25519, p.account.address, running.clock, lambda: seq, ttl_s=600)
    env = signer.sign("alarm", {"code": code, "message": f"{code} on the test site", **extra})
    return httpx.post(running.base + "/api/v1/messages", content=env.to_json(), timeout=10)


def test_alarm_reaches_the_log_and_the_live_stream_and_is_acknowledged(running: Running) -> None:
    got: queue.Queue[dict[str, object]] = queue.Queue()
    opened = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", running.base + "/api/v1/events/stream", params={"max_seconds": 20}, timeout=30) as r:
            kind = None
            for line in r.iter_lines():
                opened.set()
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "alarm":
                    got.put(json.loads(line[6:]))
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert opened.wait(10)
    assert _alarm(running, "inverter-lost").status_code == 200
    live = got.get(timeout=15)
    assert live["code"] == "inverter-lost" and live["site"] == running.market.participants[1].account.address
    listed = httpx.get(running.base + "/api/v1/events", params={"kind": "alarm", "unacked": True}, timeout=10).json()
    assert live["id"] in [e["id"] for e in listed["data"]]
    ack = f"{running.base}/api/v1/events/{live['id']}/ack"
    assert httpx.post(ack, timeout=10).status_code == 401
    assert httpx.post(ack, headers=running.auth("wrong"), timeout=10).status_code == 401
    r = httpx.post(ack, headers=running.auth(), timeout=10)
    assert r.status_code == 200 and r.json()["acked_by"] == "operator"
    missing = f"{running.base}/api/v1/events/999999999/ack"
    assert httpx.post(missing, headers=running.auth(), timeout=10).status_code == 404
    listed = httpx.get(running.base + "/api/v1/events", params={"kind": "alarm", "unacked": True}, timeout=10).json()
    assert live["id"] not in [e["id"] for e in listed["data"]]


def test_changes_need_the_operator_and_a_connected_agent(running: Running) -> None:
    addr = running.market.participants[2].account.address
    url = f"{running.base}/api/v1/sites/{addr}/config"
    before = httpx.get(running.base + "/api/v1/events", timeout=10).json()["data"]
    assert httpx.post(url, json={"reserve_soc": 0.4}, timeout=10).status_code == 401
    assert httpx.post(url, json={"reserve_soc": 0.4}, headers=running.auth("guess"), timeout=10).status_code == 401
    assert httpx.post(url, json={}, headers=running.auth(), timeout=10).status_code == 422
    assert httpx.post(url, json={"reserve_soc": 7}, headers=running.auth(), timeout=10).status_code == 422
    assert httpx.post(url, json={"voltage": 1}, headers=running.auth(), timeout=10).status_code == 422
    assert httpx.post(f"{running.base}/api/v1/sites/{ADDR}/config", json={"reserve_soc": 0.4},
                      headers=running.auth(), timeout=10).status_code == 404
    r = httpx.post(url, json={"reserve_soc": 0.4}, headers=running.auth(), timeout=10)
    assert r.status_code == 409 and "not connected" in r.json()["detail"]
    after = httpx.get(running.base + "/api/v1/events", timeout=10).json()["data"]
    assert after == before  # nothing refused by the coordinator left a trace of a change


def _wait_event(running: Running, config_id: int, timeout: float = 60) -> dict[str, object]:
    def result() -> dict[str, object] | None:
        for e in httpx.get(running.base + "/api/v1/events", params={"limit": 1000}, timeout=10).json()["data"]:
            if e["kind"] in ("config_applied", "config_refused") and e["data"].get("config_id") == config_id:
                return e
        return None

    return wait_until(result, f"a result for configuration {config_id}", timeout, poll_s=0.2)


def test_configuration_reaches_a_real_agent_which_applies_or_refuses(running: Running, tmp_path: Path) -> None:
    cfg = agent_config(tmp_path, running.market, 3, running.base, message_ttl_s=900.0, reserve_soc=0.3)
    rt = AgentRuntime(cfg, clock=running.clock)
    addr = rt.address
    url = f"{running.base}/api/v1/sites/{addr}/config"
    results: dict[str, object] = {}

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run(stop))
        await asyncio.wait_for(rt.connected.wait(), 20)
        ok = await asyncio.to_thread(
            httpx.post, url, json={"reserve_soc": 0.45, "high_threshold": 0.9}, headers=running.auth(), timeout=10
        )
        assert ok.status_code == 202, ok.text
        results["applied"] = await asyncio.to_thread(_wait_event, running, ok.json()["config_id"])
        low = await asyncio.to_thread(httpx.post, url, json={"reserve_soc": 0.02}, headers=running.auth(), timeout=10)
        results["refused"] = await asyncio.to_thread(_wait_event, running, low.json()["config_id"])
        locked = await asyncio.to_thread(
            httpx.post, url, json={"emergency_opt_in": True}, headers=running.auth(), timeout=10
        )
        results["locked"] = await asyncio.to_thread(_wait_event, running, locked.json()["config_id"])
        stop.set()
        await task

    asyncio.run(main())
    assert results["applied"]["kind"] == "config_applied"  # type: ignore[index]
    assert rt.site.control.reserve_soc == 0.45 and rt.site.control.high_threshold == 0.9
    assert results["refused"]["kind"] == "config_refused"  # type: ignore[index]
    assert "floor" in results["refused"]["message"]  # type: ignore[index]
    assert "locked" in results["locked"]["message"]  # type: ignore[index]
    assert rt.site.control.emergency_opt_in is False
    # A restarted agent keeps the applied settings.
    again = AgentRuntime(cfg, clock=running.clock)
    assert again.site.control.reserve_soc == 0.45
    again.store.close()


def test_private_analytics_need_the_key(ganache: Ganache, tmp_path: Path) -> None:
    m = deploy_fresh(ganache, n_participants=2)
    key, digest = new_operator_key()
    settings = write_settings(tmp_path, m, run_market=False, port=free_port(),
                              dashboard={"operator_key_sha256": digest, "public_read": False})
    with ServerThread(create_app(settings), settings.port) as server:
        assert httpx.get(server.base + "/api/v1/market/series", timeout=10).status_code == 401
        ok = httpx.get(server.base + "/api/v1/market/series", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert ok.status_code == 200


def test_coordinator_process_logs_json_lines_when_asked(ganache: Ganache, tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    m = deploy_fresh(ganache, n_participants=2)
    settings = write_settings(tmp_path, m, run_market=False, port=free_port())
    data = json.loads(settings.model_dump_json())
    data["log_json"] = True
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    cmd = [sys.executable, "-m", "app.cli", "coordinator", "--config", str(tmp_path / "c.yaml")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{settings.port}"

        def running() -> None:
            if proc.poll() is not None:
                raise AssertionError(f"the coordinator exited with {proc.returncode}")

        wait_until(lambda: healthy(base, timeout=1), "the coordinator serving", check=running)
        # a refused message is logged (a warning) by the hub
        assert httpx.post(base + "/api/v1/messages", content=b"{}", timeout=10).status_code == 400
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines, err
    assert any(r["logger"] == "coordinator.hub" and "rejected" in r["message"] for r in lines), err


def _forecast(running: Running, body: dict[str, object]) -> httpx.Response:
    p = running.market.participants[2]
    seq = int(time.time() * 1000)
    env = Signer(p.ed25519, p.account.address, running.clock, lambda: seq, ttl_s=600).sign("forecast", body)
    return httpx.post(running.base + "/api/v1/messages", content=env.to_json(), timeout=10)


def test_forecast_records_are_stored_or_refused_with_a_reason(running: Running) -> None:
    addr = running.market.participants[2].account.address
    now = running.clock.now()
    point = {"series": "demand", "horizon_s": 300.0, "target_start": now, "target_end": now + 300.0, "point_w": 800.0,
             "lower80_w": 700.0, "upper80_w": 900.0, "lower95_w": 650.0, "upper95_w": 950.0, "model": "auto:persistence"}
    url = running.base + f"/api/v1/sites/{addr}/forecasts"
    bad = [
        ({"record_id": 1, "made_ts": now, "points": [{**point, "point_w": 1e12}]}, "point_w"),
        ({"record_id": 1, "made_ts": now, "points": [{**point, "lower95_w": 750.0}]}, "nest"),
        ({"record_id": 1, "made_ts": now - 3 * 86_400, "points": [point]}, "within"),  # older than the outbox keeps it
        ({"record_id": 1, "made_ts": now + 86_400, "points": [{**point, "target_start": now + 86_400,
                                                               "target_end": now + 86_700}]}, "within the last day"),
    ]
    for body, reason in bad:
        r = _forecast(running, body)
        assert r.status_code == 400 and reason in r.json()["detail"]["message"], r.text
    assert httpx.get(url, timeout=10).json()["data"] == []  # nothing stored
    assert _forecast(running, {"record_id": 2, "made_ts": now, "points": [point]}).status_code == 200
    (row,) = httpx.get(url, timeout=10).json()["data"]
    assert (row["point_w"], row["upper95_w"], row["target_start"]) == (800.0, 950.0, now)
    assert row["actual_w"] is None  # the window has not passed in any telemetry yet
