"""Footprint of the real agent process at a 100 ms tick (see bench/agent_process.py).

    python scripts/bench_agent_process.py [--seconds 600] [--tick-ms 100] [--out bench/results/agent_process.json]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.agent_process import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
