#!/usr/bin/env bash
# brownie unit tests of the market contracts (tests/contracts) on a Ganache of their own.
#
#   scripts/test_contracts.sh [extra pytest args, e.g. -k settle -x]
#
# Idempotent and self-contained inside the repository: the npm solc wrapper is linked where
# brownie looks for solc 0.8.28 ($SOLCX_BINARY_PATH, default .venv/solcx), brownie's data folder
# (network list, error selectors) lives in .venv/brownie-home, and the brownie network
# `gridswarm-ganache` is (re)registered on a free port on every run, so nothing that already
# listens on 8545 is ever touched. Needs `npm ci` and the project venv (make setup).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
BROWNIE="$VENV/bin/brownie"
NETWORK=gridswarm-ganache
MNEMONIC="myth like bonus scare over problem client lizard pioneer submit female collect"

[ -x "$BROWNIE" ] || { echo "test_contracts: $BROWNIE is missing: run make setup" >&2; exit 2; }
[ -f node_modules/ganache/package.json ] || { echo "test_contracts: Ganache is missing: run npm ci" >&2; exit 2; }

export SOLCX_BINARY_PATH="${SOLCX_BINARY_PATH:-$VENV/solcx}"
mkdir -p "$SOLCX_BINARY_PATH"
ln -sfn "$ROOT/scripts/solc" "$SOLCX_BINARY_PATH/solc-v0.8.28"
export HOME="$VENV/brownie-home"
mkdir -p "$HOME" build/brownie/contracts build/brownie/deployments build/brownie/interfaces

PORT="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$BROWNIE" networks delete "$NETWORK" >/dev/null 2>&1 || true
"$BROWNIE" networks add Development "$NETWORK" \
    cmd="$ROOT/node_modules/.bin/ganache" host=http://127.0.0.1 port="$PORT" \
    chain_id=1337 evm_version=shanghai accounts=12 gas_limit=30000000 \
    mnemonic="$MNEMONIC" >/dev/null

# pyproject's pytest addopts switch the brownie plugin off for the Python suite; turn them off here.
exec "$BROWNIE" test tests/contracts --network "$NETWORK" -o addopts="-p no:cacheprovider" "$@"
