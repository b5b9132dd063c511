"""A non-Python client can use the deployment: ethers.js reads an interval's orders, fills and
settlements from the chain (with only ``deployments/<chain id>.json``) and checks them against
what the coordinator reported in ``report.json``.

Runs ``gridswarm demo --intervals 1`` on a Ganache of its own (about 40 s), then
``node tests/system/ethers_check.mjs``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.compile import ROOT
from app.devnet import Ganache

CHECK = ROOT / "tests" / "system" / "ethers_check.mjs"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "ethers").exists(),
    reason="node and the npm devDependency ethers are needed (npm ci)",
)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - (ganache url, out dir)
    out = tmp_path_factory.mktemp("ethers-demo")
    with Ganache(log_path=out / "ganache.log") as node:
        proc = subprocess.run(
            [sys.executable, "-m", "app.cli", "demo", "--rpc-url", node.url]
            + ["--intervals", "1", "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
        )
        assert proc.returncode == 0, f"demo failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        yield node.url, out


def _run_check(url: str, deployment: Path, report: Path) -> tuple[int, dict]:
    proc = subprocess.run(
        ["node", str(CHECK), url, str(deployment), str(report)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"ethers_check printed no result:\n{proc.stdout}\n{proc.stderr}"
    return proc.returncode, json.loads(lines[-1])


def test_ethers_reads_the_interval_and_agrees_with_the_report(demo_run) -> None:
    url, out = demo_run
    report = json.loads((out / "report.json").read_text())
    deployment = out / "deployments" / f"{report['chain_id']}.json"
    assert deployment.exists(), "the demo did not write deployments/<chain id>.json"
    code, result = _run_check(url, deployment, out / "report.json")
    assert result["failures"] == [], result
    assert code == 0 and result["ok"] is True
    assert result["checks"] > 20
    assert result["summary"]["fills"] == report["intervals"][0]["fills"]


def test_ethers_check_notices_a_report_that_disagrees(demo_run, tmp_path: Path) -> None:
    url, out = demo_run
    report = json.loads((out / "report.json").read_text())
    report["intervals"][0]["cleared_volume_wh"] += 1
    report["participants"][0]["total_after"] += 7
    forged = tmp_path / "report.json"
    forged.write_text(json.dumps(report))
    code, result = _run_check(url, out / "deployments" / f"{report['chain_id']}.json", forged)
    names = {f["name"] for f in result["failures"]}
    assert code == 1 and result["ok"] is False
    assert "bought = sold = cleared volume reported" in names
    assert any(n.endswith("total changed by its settlements") for n in names)
