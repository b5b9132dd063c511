"""Site control on real load data (see bench/site_control.py).

    python scripts/bench_site_control.py [--sections peak,reserve,forecast] [--out bench/results/site_control.json]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.site_control import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
