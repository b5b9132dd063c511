"""Config mistakes end in one line naming the field (exit code 2, no traceback); the devnet
keeps its chain on disk; a reset chain is recognised and named, never silently followed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from app.devnet import Ganache, free_port
from coordinator.api.schemas import Health  # noqa: F401 - imported so a broken API package fails here too
from gridswarm.chain import connect
from tests.conftest import deploy_fresh
from tests.coordinator.conftest import write_settings

ROOT = Path(__file__).resolve().parents[2]


def _coordinator(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "coordinator", "--config", str(config)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip


def _settings_file(tmp: Path, settings: object, **changes: object) -> Path:
    data = yaml.safe_load(yaml.safe_dump(settings.model_dump(mode="json")))  # type: ignore[attr-defined]
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            data[outer][inner] = value
        else:
            data[key] = value
    path = tmp / "coordinator.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("gridswarm: error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]


def test_coordinator_config_mistakes_are_one_line(ganache: Ganache, tmp_path: Path) -> None:
    m = deploy_fresh(ganache, n_participants=1)
    settings = write_settings(tmp_path, m)
    _one_line_error(_coordinator(_settings_file(tmp_path, settings, **{"market.gate_lead_s": 900.0})), "gate_lead_s", "interval_s")
    _one_line_error(_coordinator(_settings_file(tmp_path, settings, rpc_url="http://127.0.0.1:9")), "rpc_url", "127.0.0.1:9")
    _one_line_error(_coordinator(_settings_file(tmp_path, settings, operator_key_file=str(tmp_path / "nope.key"))), "operator_key_file")
    _one_line_error(_coordinator(_settings_file(tmp_path, settings, prot=1)), "prot")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("rpc_url: [unclosed\n")
    _one_line_error(_coordinator(bad_yaml), "not valid YAML")
    # a deployment whose market address holds no code (wrong chain or a reset node)
    other = json_with(settings.deployment, market="0x" + "11" * 20, out=tmp_path / "wrong.json")
    _one_line_error(_coordinator(_settings_file(tmp_path, settings, deployment=str(other))), "no contract code", "market")


def json_with(path: Path, out: Path, **fields: object) -> Path:
    import json

    data = json.loads(Path(path).read_text())
    data.update(fields)
    out.write_text(json.dumps(data))
    return out


def test_devnet_keeps_the_chain_and_a_reset_is_named(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "chain"
    with Ganache(port=port, db_path=db) as node:
        m = deploy_fresh(node, n_participants=1)
        settings = write_settings(tmp_path, m)
        head = int(connect(node.url).eth.block_number)
    # the node restarted on its folder resumes: same blocks, the market still there
    with Ganache(port=port, db_path=db) as node:
        w3 = connect(node.url)
        assert int(w3.eth.block_number) == head
        assert w3.eth.get_code(m.dep.market)
        from coordinator.preflight import check

        check(settings)  # records the chain's identity in the coordinator's database
    # the node restarted empty (a reset chain) on the same port: the coordinator refuses, naming it
    shutil.rmtree(db)
    with Ganache(port=port, db_path=db):
        proc = _coordinator(_settings_file(tmp_path, settings))
    _one_line_error(proc, "no contract code", "reset")
