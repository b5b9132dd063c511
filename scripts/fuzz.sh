#!/usr/bin/env bash
# Foundry invariant tests of the market (tests/foundry): RUNS random sequences per invariant,
# each `depth` handler calls long (foundry.toml). `make fuzz` runs 10,000; `make test` a short
# pass. Offline: forge comes from npm (@foundry-rs/forge-linux-amd64), solc from scripts/solc.
#
#   scripts/fuzz.sh [RUNS] [extra forge args, e.g. --fuzz-seed 7 -vvv]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUNS="${1:-10000}"
shift $(( $# > 0 ? 1 : 0 ))
case "$RUNS" in ''|*[!0-9]*) echo "fuzz: RUNS must be a number, got '$RUNS'" >&2; exit 2 ;; esac
FORGE="$ROOT/node_modules/@foundry-rs/forge-linux-amd64/bin/forge"
[ -x "$FORGE" ] || { echo "fuzz: forge is missing: run npm ci" >&2; exit 2; }

echo "invariant runs per invariant: $RUNS"
FOUNDRY_INVARIANT_RUNS="$RUNS" FOUNDRY_FUZZ_RUNS="$RUNS" exec "$FORGE" test --match-path 'tests/foundry/*.t.sol' "$@"
