"""Checks a coordinator's settings against the files and the chain before it serves, so that a
mistake ends the start with one line naming the field and the fix (the CLI prints it and exits
with code 2) instead of a traceback from deep inside the service.

Also recognises a chain that was reset or replaced under an existing database: the genesis
block hash is recorded in the store on first start and compared on every later one; the market
address must hold code; the chain head must not be behind the block already indexed.
"""

from __future__ import annotations

import json
from pathlib import Path

from coordinator.settings import CoordinatorSettings
from coordinator.store import Store
from gridswarm.chain import ChainUnavailable, Deployment, connect
from gridswarm.errors import UserError
from gridswarm.keys import load_ed25519, load_eth_key


class StartupError(UserError, RuntimeError):
    """The coordinator cannot start; the message names the field or fact and the fix."""


def _file(field: str, path: Path) -> Path:
    if not Path(path).is_file():
        raise StartupError(f"{field}: no file at {path} (fix the path in the config)")
    return Path(path)


def check(settings: CoordinatorSettings) -> None:
    try:
        dep = Deployment.load(_file("deployment", settings.deployment))
    except (ValueError, TypeError, KeyError) as exc:
        raise StartupError(f"deployment: {settings.deployment} is not a deployment record ({exc.__class__.__name__})") from exc
    for field in ("operator_key_file", "ed25519_key_file"):
        path = _file(field, getattr(settings, field))
        try:
            (load_eth_key if field == "operator_key_file" else load_ed25519)(path)
        except (ValueError, OSError) as exc:
            raise StartupError(f"{field}: {path} does not hold a 32-byte hex key ({exc})") from exc
    try:
        w3 = connect(settings.rpc_url, timeout_s=10)
    except ChainUnavailable as exc:
        raise StartupError(f"rpc_url: {exc} (start the node or fix the URL)") from exc
    chain_id = int(w3.eth.chain_id)
    if chain_id != dep.chain_id:
        raise StartupError(
            f"rpc_url: {settings.rpc_url} is chain {chain_id}, but deployment {settings.deployment} is for chain "
            f"{dep.chain_id} (point rpc_url at the deployment's chain or use its deployment file)"
        )
    if not w3.eth.get_code(dep.market):
        raise StartupError(
            f"deployment: no contract code at the market address {dep.market} on {settings.rpc_url}: "
            "the chain was reset or the deployment file is for another chain (redeploy, or restart the node "
            "with its database)"
        )
    market = dep.market_contract(w3)
    key = load_ed25519(settings.ed25519_key_file)
    if bytes(market.functions.coordinatorKey().call()) != bytes(key.verify_key):
        raise StartupError(
            f"ed25519_key_file: {settings.ed25519_key_file} is not the coordinator key published on chain "
            "(use that key, or publish this one with setCoordinatorKey)"
        )
    genesis = "0x" + bytes(w3.eth.get_block(0)["hash"]).hex()
    head = int(w3.eth.block_number)
    store = Store(settings.db_path)
    try:
        identity = {"chain_id": chain_id, "genesis": genesis, "market": dep.market}
        known = store.meta("chain")
        if known is None:
            store.set_meta("chain", json.dumps(identity))
        else:
            was = json.loads(known)
            if was != identity:
                raise StartupError(
                    f"db_path: {settings.db_path} indexes chain {was['chain_id']} (genesis {was['genesis'][:18]}…, "
                    f"market {was['market']}), but the node is chain {chain_id} (genesis {genesis[:18]}…, market "
                    f"{dep.market}): the chain was reset or replaced (restore the node's database, or start with a "
                    "new db_path)"
                )
        indexed = store.cursor("market", -1)
        if head < indexed:
            raise StartupError(
                f"rpc_url: the chain head {head} is behind block {indexed} already indexed in {settings.db_path}: "
                "the node lost blocks (restart it with its database)"
            )
    finally:
        store.close()
