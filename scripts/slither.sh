#!/usr/bin/env bash
# Slither static analysis of the market contracts. Fails on any high or medium finding; every
# accepted one is explained where it is (`// slither-disable-next-line <detector>` + reason).
# Low/informational findings (block.timestamp deadlines, assembly) are printed, not failed on.
#
#   scripts/slither.sh [extra slither args]
#
# Slither pulls eth-abi 6 and friends past eth-brownie's exact pins, so it lives in its own venv
# (.venv/tools, from requirements/tools.txt, created on first use). Runs offline.
set -euo pipefail

# shellcheck source=scripts/tools_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/tools_env.sh"
[ -f node_modules/@openzeppelin/contracts/package.json ] || { echo "slither: run npm ci first" >&2; exit 2; }
# Compiled through forge (npm; foundry.toml points it at scripts/solc, offline), tests skipped.
export PATH="$ROOT/node_modules/@foundry-rs/forge-linux-amd64/bin:$PATH"

exec "$TOOLS/bin/slither" . \
    --compile-force-framework foundry --foundry-out-directory out-forge \
    --filter-paths "node_modules|tests" \
    --fail-medium "$@"
