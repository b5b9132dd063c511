"""Compile the Solidity contracts with the pinned npm solc (README, "The two commands") for EVM shanghai.

The result (ABI + bytecode per contract) is cached in ``build/gridswarm/artifacts.json`` keyed
by a hash of the sources, so only the first run pays for compilation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

from gridswarm.errors import GridSwarmError

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = ROOT / "contracts"
SOLC_SCRIPT = ROOT / "scripts" / "solc"
SOLC_VERSION = "0.8.28"
EVM_VERSION = "shanghai"
CACHE = ROOT / "build" / "gridswarm" / "artifacts.json"
REMAPPINGS = ["@openzeppelin/=node_modules/@openzeppelin/"]


class CompileError(GridSwarmError, RuntimeError):
    """The contracts did not compile."""


def _sources() -> dict[str, Path]:
    return {
        str(p.relative_to(ROOT)): p
        for p in sorted(CONTRACTS_DIR.rglob("*.sol"))
        if "test" not in p.relative_to(CONTRACTS_DIR).parts
    }


def _fingerprint(sources: dict[str, Path]) -> str:
    h = hashlib.sha256(f"{SOLC_VERSION}/{EVM_VERSION}/linkrefs".encode())
    for name, path in sources.items():
        h.update(name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def standard_input(sources: dict[str, Path]) -> dict[str, Any]:
    return {
        "language": "Solidity",
        "sources": {name: {"content": path.read_text()} for name, path in sources.items()},
        "settings": {
            "evmVersion": EVM_VERSION,
            "optimizer": {"enabled": True, "runs": 100},  # 200 puts EnergyMarket over EIP-170's limit
            "remappings": REMAPPINGS,
            "outputSelection": {
                "*": {"*": ["abi", "evm.bytecode.object", "evm.bytecode.linkReferences", "evm.deployedBytecode.object"]}
            },
        },
    }


def compile_contracts(force: bool = False) -> dict[str, dict[str, Any]]:
    """Return ``{ContractName: {"abi": [...], "bytecode": "0x..."}}`` for every contract."""
    sources = _sources()
    fp = _fingerprint(sources)
    if not force and CACHE.exists():
        cached = json.loads(CACHE.read_text())
        if cached.get("fingerprint") == fp:
            return cached["contracts"]
    node = shutil.which("node")
    if node is None:
        raise CompileError("node is not on PATH; it runs the npm solc compiler (make setup installs it)")
    if not (ROOT / "node_modules" / "solc").exists():
        raise CompileError("node_modules/solc is missing: run `npm ci` (make setup does)")
    proc = subprocess.run(
        [node, str(SOLC_SCRIPT), "--standard-json"],
        input=json.dumps(standard_input(sources)).encode(),
        capture_output=True,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise CompileError(proc.stderr.decode(errors="replace"))
    out = json.loads(proc.stdout)
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors))
    contracts: dict[str, dict[str, Any]] = {}
    for src, by_name in out["contracts"].items():
        if not src.startswith("contracts/"):
            continue
        for name, art in by_name.items():
            contracts[name] = {
                "abi": art["abi"],
                "bytecode": "0x" + art["evm"]["bytecode"]["object"],
                "link_references": art["evm"]["bytecode"].get("linkReferences", {}),
                "source": src,
            }
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps({"fingerprint": fp, "contracts": contracts}))
    logger.info("compiled %d contracts with solc %s for %s", len(contracts), SOLC_VERSION, EVM_VERSION)
    return contracts


def link_bytecode(artifact: dict[str, Any], libraries: dict[str, str]) -> str:
    """The artifact's bytecode with each external library's placeholder replaced by its address
    (``libraries``: library name -> deployed address). Raises if one is missing."""
    code = artifact["bytecode"]
    hexcode = code[2:]
    for _source, names in artifact.get("link_references", {}).items():
        for name, places in names.items():
            if name not in libraries:
                raise CompileError(f"library {name} is not deployed: cannot link {artifact.get('source')}")
            addr = libraries[name].lower().removeprefix("0x")
            for place in places:
                start, length = 2 * place["start"], 2 * place["length"]
                hexcode = hexcode[:start] + addr + hexcode[start + length :]
    if "__" in hexcode:
        raise CompileError("bytecode still has unlinked library placeholders")
    return "0x" + hexcode
