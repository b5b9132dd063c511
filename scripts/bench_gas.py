"""Measure contract gas on Ganache; writes bench/results/gas.json (see bench/gas.py).

Usage: python scripts/bench_gas.py [--sizes 1,2,10,100,1000] [--markdown] [--update-snapshot]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gas import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
