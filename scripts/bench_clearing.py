"""Benchmark the market clearing engine; writes bench/results/clearing.json.

Usage: python scripts/bench_clearing.py [--sizes 1000,10000] [--seed N] [--out PATH] [--markdown]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.clearing import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
