# Sourced by scripts/halmos.sh and scripts/slither.sh: the tools venv (.venv/tools, from the
# pinned requirements/tools.txt) that Halmos and Slither need beside eth-brownie's exact pins,
# created or refreshed on first use. Sets ROOT (and cds there) and TOOLS.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TOOLS="${TOOLS_VENV:-$ROOT/.venv/tools}"
STAMP="$TOOLS/.installed"
if [ ! -f "$STAMP" ] || [ requirements/tools.txt -nt "$STAMP" ]; then
    PY="$(command -v python3.11 || command -v python3)"
    [ -x "$TOOLS/bin/python" ] || "$PY" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install --disable-pip-version-check -q -r requirements/tools.txt
    touch "$STAMP"
fi
