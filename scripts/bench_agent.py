"""Footprint benchmark of one agent site at a 10 ms tick (see bench/agent_footprint.py).

    python scripts/bench_agent.py [--seconds 60] [--tick-ms 10] [--out bench/results/agent.json]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.agent_footprint import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
