from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp: Path, devices: list[dict]) -> Path:
    cfg = {
        "site": "check",
        "eth_key_file": "eth.key",
        "ed25519_key_file": "ed.key",
        "coordinator_url": "http://127.0.0.1:9",
        "rpc_url": "http://127.0.0.1:9",
        "deployment": "deployment.json",
        "devices": devices,
    }
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridswarm.cli", "agent", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_check_probes_every_device(tmp_path: Path) -> None:
    devices = [
        {"type": "pv", "peak_w": 5000.0},
        {"type": "battery", "capacity_wh": 10000.0, "max_charge_w": 4000.0, "max_discharge_w": 4000.0},
        {"type": "grid"},
    ]
    proc = _agent("--config", str(_config(tmp_path, devices)), "--check")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [r["kind"] for r in rows] == ["pv", "battery", "grid"]
    assert all(r["ok"] for r in rows)


def test_check_reports_an_unreachable_sunspec_device(tmp_path: Path) -> None:
    devices = [{"type": "battery", "driver": "sunspec", "host": "127.0.0.1", "port": 9, "timeout_s": 0.5}]
    proc = _agent("--config", str(_config(tmp_path, devices)), "--check")
    assert proc.returncode == 1
    row = json.loads(proc.stdout.splitlines()[0])
    assert row["ok"] is False and row["error"]


def test_bad_device_field_is_named(tmp_path: Path) -> None:
    devices = [{"type": "battery", "capacity_wh": 0, "max_charge_w": 1.0, "max_discharge_w": 1.0}]
    proc = _agent("--config", str(_config(tmp_path, devices)), "--check")
    assert proc.returncode == 2
    assert "devices[0].capacity_wh" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_agent_command_does_not_load_the_benchmarks_heavy_imports() -> None:
    code = ("import sys; from gridswarm.cli import build_parser, CORE; "
            "build_parser(delegated=False).parse_args(['agent', '--config', 'x.yaml']); "
            "print(sorted(m for m in ('scipy', 'pandas', 'fastapi') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
