"""Run schemathesis against a live coordinator (called by scripts/schemathesis.sh).

Starts Ganache on a free port, deploys a market with four registered participants, starts the
coordinator as its own process (``gridswarm coordinator``, market loop on), runs the given
schemathesis executable against ``/openapi.json`` and stops everything. Exit code: schemathesis's
(non-zero on any server error or response outside the schema), or 2 if the rig did not start.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from app.deploy import TOKEN_UNIT, ParticipantSpec, deploy_seeded_market, register_participants
from app.devnet import Ganache, free_port
from gridswarm.keys import derive_ed25519, derive_eth_account, hash_operator_key, write_ed25519, write_eth_key

OPERATOR_KEY = "api-fuzz-operator-key"  # a throw-away key for this run only
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--schemathesis", required=True, help="the schemathesis executable")
    ap.add_argument("--max-time", type=int, default=45, help="schemathesis time budget, seconds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=None)
    args, extra = ap.parse_known_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gridswarm-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    with Ganache(log_path=work / "ganache.log") as node:
        from gridswarm.chain import connect

        w3 = connect(node.url)
        seed = 77
        admin, operator, key, dep = deploy_seeded_market(w3, seed)
        specs = [
            ParticipantSpec(derive_eth_account(seed, "agent", i), derive_ed25519(seed, "agent", i), tokens=TOKEN_UNIT)
            for i in range(4)
        ]
        register_participants(w3, dep, admin, specs)
        port = free_port()
        cfg = {
            "rpc_url": node.url,
            "deployment": str(dep.save(work / "deployment.json")),
            "operator_key_file": str(write_eth_key(work / "operator.key", operator)),
            "ed25519_key_file": str(write_ed25519(work / "coordinator.ed25519", key)),
            "db_path": str(work / "coordinator.sqlite"),
            "port": port,
            "market": {"interval_s": 900.0, "gate_lead_s": 300.0},
            # every route is exercised: the fleet service runs, and schemathesis holds the
            # operator key, so the state-changing routes are reached past their auth check
            "fleet": {"enabled": True},
            "dashboard": {"operator_key_sha256": hash_operator_key(OPERATOR_KEY)},
        }
        (work / "coordinator.yaml").write_text(yaml.safe_dump(cfg))
        base = f"http://127.0.0.1:{port}"
        with open(work / "coordinator.log", "wb") as log:
            coord = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "coordinator", "--config", str(work / "coordinator.yaml")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if coord.poll() is not None or time.monotonic() > deadline:
                    print(f"api fuzz: the coordinator did not start; see {work}/coordinator.log", file=sys.stderr)
                    return 2
                time.sleep(0.2)
            cmd = [
                args.schemathesis, "run", base + "/openapi.json",
                "--checks", CHECKS,
                "--max-time", str(args.max_time),
                "--seed", str(args.seed),
                "--workers", "1",  # 2 threads hit a CPython 3.11 compile() race inside hypothesis
                "--generation-database", "none",
                "--no-color",
                "--header", f"Authorization: Bearer {OPERATOR_KEY}",
                *extra,
            ]  # fmt: skip
            print("api fuzz:", " ".join(cmd), flush=True)
            rc = subprocess.call(cmd)
            if coord.poll() is not None:
                print(f"api fuzz: the coordinator died during the run; see {work}/coordinator.log", file=sys.stderr)
                return 2
            errors = (work / "coordinator.log").read_text(errors="replace").count("Traceback")
            print(f"api fuzz: schemathesis exit {rc}; {errors} tracebacks in the coordinator log ({work})", flush=True)
            return rc or (1 if errors else 0)
        finally:
            coord.terminate()
            try:
                coord.wait(timeout=15)
            except subprocess.TimeoutExpired:
                coord.kill()


if __name__ == "__main__":
    sys.exit(main())
