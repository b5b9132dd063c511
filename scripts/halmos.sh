#!/usr/bin/env bash
# Halmos symbolic checks of the settlement arithmetic (tests/foundry/halmos): every `check_`
# function of SettlementMathCheck must hold for all inputs in its bounds. Offline: Halmos runs
# forge (npm) with the npm solc behind scripts/solc; its solvers come with its wheel.
#
#   scripts/halmos.sh [extra halmos args, e.g. --function check_proRata]
#
# Halmos pulls packages past eth-brownie's exact pins, so it lives in its own venv (.venv/tools,
# from requirements/tools.txt, created on first use).
set -euo pipefail

# shellcheck source=scripts/tools_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/tools_env.sh"
FORGE_BIN="$ROOT/node_modules/@foundry-rs/forge-linux-amd64/bin"
[ -x "$FORGE_BIN/forge" ] || { echo "halmos: forge is missing: run npm ci" >&2; exit 2; }
export PATH="$FORGE_BIN:$PATH"

exec "$TOOLS/bin/halmos" --root "$ROOT" --contract SettlementMathCheck --forge-build-out out-forge \
    --loop 6 --solver-timeout-assertion 300s "$@"
