#!/usr/bin/env bash
# Schemathesis against a live coordinator: scripts/api_fuzz.py starts Ganache, deploys a market,
# starts `gridswarm coordinator` on a free port and runs schemathesis on its /openapi.json; the
# pass fails on any server error (5xx) or response that breaks the published schema.
#
#   scripts/schemathesis.sh [--max-time SECONDS] [extra schemathesis args]
#
# schemathesis needs hypothesis >= 6.130, past eth-brownie's pins, so it lives in its own venv
# (.venv/schemathesis, from requirements/schemathesis.txt, created on first use).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_VENV="${SCHEMATHESIS_VENV:-$ROOT/.venv/schemathesis}" TOOLS_REQUIREMENTS=requirements/schemathesis.txt
export TOOLS_VENV TOOLS_REQUIREMENTS
# shellcheck source=scripts/tools_env.sh
source "$ROOT/scripts/tools_env.sh"
exec "$ROOT/.venv/bin/python" "$ROOT/scripts/api_fuzz.py" --schemathesis "$TOOLS/bin/schemathesis" "$@"
