"""Clear large books end to end on Ganache; writes bench/results/clearing_e2e.json.

Usage: python scripts/bench_e2e_clearing.py [--sizes 100,500,1000,2000] [--seed N] [--out PATH] [--markdown]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.clearing_e2e import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
