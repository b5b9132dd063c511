# Sourced by scripts/halmos.sh and scripts/slither.sh: the tools venv (.venv/tools, from the
# pinned requirements/tools.txt) that Halmos and Slither need beside eth-brownie's exact pins,
# created or refreshed on first use. Sets ROOT (and cds there) and TOOLS. scripts/schemathesis.sh
# sets TOOLS_VENV and TOOLS_REQUIREMENTS first to get a venv of its own the same way.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TOOLS="${TOOLS_VENV:-$ROOT/.venv/tools}"
REQS="${TOOLS_REQUIREMENTS:-requirements/tools.txt}"
STAMP="$TOOLS/.installed"
if [ ! -f "$STAMP" ] || [ "$REQS" -nt "$STAMP" ]; then
    PY="$(command -v python3.11 || command -v python3)"
    [ -x "$TOOLS/bin/python" ] || "$PY" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install --disable-pip-version-check -q -r "$REQS"
    touch "$STAMP"
fi
