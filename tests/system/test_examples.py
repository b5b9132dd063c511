"""The example site configs load and validate as shipped, and ``--check`` of the SunSpec example
runs against the SunSpec test device (``python -m agent.drivers.sunspec_sim``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.config import AgentConfig, DeviceSectionConfig
from agent.site import Site
from gridswarm.clock import ManualClock

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.mark.parametrize("name", ["site.yaml", "site-sunspec.yaml"])
def test_example_loads_and_its_devices_validate(name: str) -> None:
    cfg = AgentConfig.load(EXAMPLES / name)
    assert cfg.eth_key_file == EXAMPLES / "../keys/site0.key"
    assert cfg.deployment == EXAMPLES / "../deployments/1337.json"
    site = Site.from_config(cfg.devices, ManualClock(1_750_000_000.0), seed=cfg.seed, reserve_soc=cfg.reserve_soc,
                            **cfg.control.model_dump())
    assert list(site.drivers) == [d.id for d in cfg.devices]
    assert DeviceSectionConfig.load(EXAMPLES / name).devices == cfg.devices


def test_sim_example_check_passes() -> None:
    proc = subprocess.run([sys.executable, "-m", "app.cli", "agent", "--config", str(EXAMPLES / "site.yaml"),
                           "--check"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["device_id"] for r in rows] == ["roof", "battery", "house", "grid"]


def _free_port() -> int:
    from agent.drivers.sunspec_sim import free_port

    return free_port()


def test_sunspec_example_check_runs_against_the_test_device(tmp_path: Path) -> None:
    bport, pport = _free_port(), _free_port()
    sim = subprocess.Popen([sys.executable, "-m", "agent.drivers.sunspec_sim", "--port", str(bport),
                            "--pv-port", str(pport)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        for _ in range(2):
            line = sim.stdout.readline()  # type: ignore[union-attr]
            assert "SunSpec test device" in line, line
        # the example as shipped, on the ports this test could get
        text = (EXAMPLES / "site-sunspec.yaml").read_text()
        text = text.replace("port: 5020", f"port: {bport}").replace("port: 5021", f"port: {pport}")
        cfg = tmp_path / "site-sunspec.yaml"
        cfg.write_text(text)
        assert yaml.safe_load(text)["devices"][0]["port"] == bport
        proc = subprocess.run([sys.executable, "-m", "app.cli", "agent", "--config", str(cfg), "--check"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rows = {r["device_id"]: r for r in map(json.loads, proc.stdout.splitlines())}
        assert rows["hybrid"]["ok"] and rows["hybrid"]["controls"] and 704 in rows["hybrid"]["models"]
        assert rows["roof"]["ok"] and not rows["roof"]["controls"] and rows["roof"]["cannot"]
        assert rows["hybrid"]["values"]["soc"]["unit"] == "0..1"
        assert rows["hybrid"]["values"]["voltage_v"] == {"value": 230.4, "unit": "V"}
        assert "hybrid (battery, sunspec): ok" in proc.stderr
    finally:
        sim.terminate()
        sim.wait(timeout=10)
