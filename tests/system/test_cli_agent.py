from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
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
        [sys.executable, "-m", "app.cli", "agent", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
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


# ---------------------------------------------------------------- --check against a field-laid-out SunSpec device

sys.path.insert(0, str(ROOT / "tests" / "agent" / "drivers"))
from field_device import LAYOUTS, serve  # noqa: E402

from gridswarm.clock import ManualClock  # noqa: E402
from tests.support.waiting import wait_until_async  # noqa: E402

TICKS_WITHOUT_WRITES = 8  # control ticks (0.5 s each) an agent without capacity runs before it is judged


async def _check_async(path: Path) -> tuple[int, str, str]:
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "agent", "--config", str(path), "--check",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


def _devices_only(tmp: Path, devices: list[dict]) -> Path:
    path = tmp / "devices.yaml"
    path.write_text(yaml.safe_dump({"devices": devices}))  # no keys, URLs or deployment
    return path


def test_check_only_reads_a_writable_device_and_says_what_it_controls(tmp_path: Path) -> None:
    import asyncio

    async def main() -> None:
        async with serve(ManualClock(1_750_000_000.0), LAYOUTS["der-124"]) as dev:
            # the owner's mode: discharging through 704 and 124 left in discharge mode
            dev._set(704, "WSetEna", 1)
            dev._set(704, "WSet", 1_200.0)
            dev._set(124, "StorCtl_Mod", 2)
            dev._settle()
            dev._publish()
            before = dev.image()
            dev_cfg = {"id": "hybrid", "type": "battery", "driver": "sunspec", "host": "127.0.0.1", "port": dev.port,
                       "writable": True, "timeout_s": 1.0}
            code, out, err = await _check_async(_devices_only(tmp_path, [dev_cfg]))
            assert code == 1, err  # writable but cannot be controlled: no capacity anywhere
            row = json.loads(out.splitlines()[0])
            assert row["ok"] and row["models"] == [1, 124, 704, 701]
            assert "capacity_wh" in row["missing"] and not row["controls"]
            assert "missing:  capacity_wh" in err
            dev_cfg["capacity_wh"] = 12_000.0
            code, out, err = await _check_async(_devices_only(tmp_path, [dev_cfg]))
            assert code == 0, err
            row = json.loads(out.splitlines()[0])
            assert row["controls"] and "704 WSet" in row["controls"][0]
            assert row["values"]["voltage_v"] == {"value": 230.4, "unit": "V"}
            assert row["values"]["frequency_hz"]["unit"] == "Hz"
            assert row["values"]["capacity_wh"] == {"value": 12_000.0, "unit": "Wh"}
            assert "capacity_wh from config" in row["detail"]
            assert "values:   power_w = 1200 W" in err
            assert dev.writes == []  # not one write request reached the device
            assert dev.image() == before
            assert dev.read_point(704, "WSetEna") == 1 and dev.read_point(124, "StorCtl_Mod") == 2

    asyncio.run(main())


def test_check_reads_a_sunspec_meter(tmp_path: Path) -> None:
    import asyncio

    from field_device import meter_layout

    async def main() -> None:
        async with serve(ManualClock(1_750_000_000.0), meter_layout(203), kind="grid") as dev:
            cfg = [{"id": "poc", "type": "grid", "driver": "sunspec", "host": "127.0.0.1", "port": dev.port}]
            code, out, err = await _check_async(_devices_only(tmp_path, cfg))
            assert code == 0, err
            row = json.loads(out.splitlines()[0])
            assert row["models"] == [1, 203] and row["values"]["frequency_hz"]["value"] == 50.02
            assert row["values"]["energy_out_wh"]["unit"] == "Wh" and row["controls"] == []

    asyncio.run(main())


@pytest.mark.parametrize("capacity", [10_000.0, None])
def test_agent_process_dispatches_a_sunspec_battery_with_config_capacity(ganache, tmp_path: Path, capacity) -> None:
    """A real agent process (chain deployed, coordinator absent: the site runs autonomously) drives a
    battery that exposes only 1/124/704/701 once the config supplies its capacity, says so once at
    start, and reverts it on the way out; without the capacity it says once why it will not."""
    import asyncio
    import signal

    from gridswarm.keys import write_ed25519, write_eth_key
    from tests.conftest import deploy_fresh

    mk = deploy_fresh(ganache, n_participants=1)
    part = mk.participants[0]
    dep_path = mk.dep.save(tmp_path / "deployment.json")

    async def main() -> None:
        async with serve(ManualClock(1_750_000_000.0), LAYOUTS["der-124"], soc=0.8) as dev:
            battery = {"id": "hybrid", "type": "battery", "driver": "sunspec", "host": "127.0.0.1", "port": dev.port,
                       "writable": True, "timeout_s": 1.0}
            if capacity:
                battery["capacity_wh"] = capacity
            cfg = {
                "site": "sunspec-e2e",
                "eth_key_file": str(write_eth_key(tmp_path / "eth.key", part.account)),
                "ed25519_key_file": str(write_ed25519(tmp_path / "ed.key", part.ed25519)),
                "coordinator_url": "http://127.0.0.1:9",  # nobody there: autonomous self-consumption
                "rpc_url": ganache.url,
                "deployment": str(dep_path),
                "store_path": str(tmp_path / "agent.sqlite"),
                "tick_s": 0.5,
                "reserve_soc": 0.2,
                "devices": [battery, {"id": "house", "type": "load", "profile": "datacentre", "peak_w": 1_200.0}],
            }
            path = tmp_path / "site.yaml"
            path.write_text(yaml.safe_dump(cfg))
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "app.cli", "agent", "--config", str(path),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
            lines: list[str] = []

            async def collect() -> None:
                assert proc.stderr is not None
                async for raw in proc.stderr:
                    lines.append(raw.decode())

            reader = asyncio.create_task(collect())
            try:
                # the site's start-up line says the agent is running its devices
                await wait_until_async(
                    lambda: any("device hybrid" in ln for ln in lines),
                    lambda: "the agent's start-up line:\n" + "".join(lines)[-3000:],
                )
                assert any("device hybrid" in ln for ln in lines), "".join(lines)[-3000:]
                if capacity:
                    await wait_until_async(
                        lambda: dev.read_point(704, "WSetEna") == 1 and (dev.read_point(704, "WSet") or 0) > 0,
                        "the agent dispatching the battery",
                    )
                else:  # nothing may come in several control ticks (each reads the storage model 124 once)
                    ticks_from = dev.reads[124]
                    await wait_until_async(
                        lambda: dev.reads[124] >= ticks_from + TICKS_WITHOUT_WRITES,
                        f"{TICKS_WITHOUT_WRITES} control ticks",
                    )
                if capacity:
                    assert dev.read_point(704, "WSetEna") == 1, "the agent never dispatched the battery"
                    assert dev.read_point(704, "WSet") > 0  # discharging to cover the load
                else:
                    assert not [a for a, _ in dev.writes if a >= dev.addr[704]], "wrote without a capacity"
            finally:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 60)
                await asyncio.wait_for(reader, 10)
            log = "".join(lines)
            if capacity:
                assert log.count("device hybrid controlled") == 1, log[-3000:]
                assert "will not be controlled" not in log
                assert dev.read_point(704, "WSetEna") == 0  # reverted when the agent stopped
            else:
                warned = [ln for ln in lines if "will not be controlled" in ln]
                assert len(warned) == 1 and "WARNING" in warned[0] and "device hybrid" in warned[0], log[-3000:]
                assert "capacity_wh" in warned[0]
                assert dev.writes == []  # not even a revert on the way out: it never wrote

    asyncio.run(main())
def test_the_agent_command_does_not_load_the_benchmarks_heavy_imports() -> None:
    code = ("import sys; from app.cli import build_parser, CORE; "
            "build_parser(delegated=False).parse_args(['agent', '--config', 'x.yaml']); "
            "print(sorted(m for m in ('scipy', 'pandas', 'fastapi') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
