"""Forecast benchmark on real data: writes bench/results/forecast.json, prints markdown tables.

    python scripts/bench_forecast.py [--sections taylor,simbench,pv] [--models ...]

Thin wrapper over :mod:`bench.forecast` (also ``gridswarm bench forecast``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.forecast import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
