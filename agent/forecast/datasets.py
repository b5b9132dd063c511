"""Real data sets that ship inside packages (listed in docs/forecasting.md), for the benchmark and tests.

- :func:`load_taylor`: England & Wales half-hourly demand (MW), 5 Jun - 27 Aug 2000, 4,032
  points, from ``pmdarima`` (no time stamps ship with it; the dates are Taylor's).
- :func:`load_simbench`: SimBench 2016 profiles at 15 minutes (35,136 steps). SimBench is an
  optional extra (91 MB, and its dependencies conflict with eth-brownie's pins), so it lives in
  its own environment; export the profiles once with that environment's Python::

      python -m agent.forecast.datasets export-simbench cache/simbench_profiles.npz

  and the benchmark reads the ``.npz``. Without either, SimBench sections are skipped.
- :func:`load_tmy3`: hourly TMY3 weather for Greensboro NC, shipped with pvlib.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SIMBENCH_CACHE = ROOT / "cache" / "simbench_profiles.npz"
TAYLOR_START = 959990400.0  # Mon 5 Jun 2000 00:00 UTC
SIMBENCH_START = 1451606400.0  # 1 Jan 2016 00:00 (profiles' own clock, treated as UTC)

#: SimBench columns used by the benchmark: single sites and feeder aggregates
SIMBENCH_LOADS = ("H0-A_pload", "H0-B_pload", "H0-C_pload", "G1-A_pload", "G4-A_pload",
                  "L1-A_pload", "lv_rural1_pload", "lv_semiurb4_pload", "lv_urban6_pload")
SIMBENCH_PV = ("PV1", "PV2", "PV3", "PV4", "PV5", "PV6", "PV7", "PV8")


def load_taylor() -> tuple[np.ndarray, float, float]:
    """(values MW, start_ts, step_s) of Taylor's England & Wales series."""
    from pmdarima.datasets import load_taylor as _load

    return np.asarray(_load(), dtype=float), TAYLOR_START, 1800.0


def _simbench_dir() -> Path:
    import simbench

    base = Path(simbench.__file__).resolve().parent / "networks"
    return base / "1-complete_data-mixed-all-0-sw"


def export_simbench(out: Path = SIMBENCH_CACHE) -> Path:
    """Read the profiles from an installed ``simbench`` and write the subset we use."""
    import pandas as pd

    d = _simbench_dir()
    loads = pd.read_csv(d / "LoadProfile.csv", sep=";", usecols=["time", *SIMBENCH_LOADS])
    res = pd.read_csv(d / "RESProfile.csv", sep=";", usecols=["time", *SIMBENCH_PV])
    if len(loads) != len(res):
        raise ValueError("SimBench load and RES profiles differ in length")
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {c: loads[c].to_numpy(dtype=np.float32) for c in SIMBENCH_LOADS}
    arrays.update({c: res[c].to_numpy(dtype=np.float32) for c in SIMBENCH_PV})
    np.savez_compressed(out, first_time=np.array(str(loads["time"].iloc[0])), **arrays)
    return out


def load_simbench(cache: Path | None = None) -> dict[str, np.ndarray] | None:
    """SimBench profiles by column name (15-min steps from 1 Jan 2016), or None if absent."""
    path = Path(cache) if cache is not None else SIMBENCH_CACHE
    if not path.exists():
        try:
            export_simbench(path)
        except ImportError:
            return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k].astype(float) for k in z.files if k != "first_time"}


def load_tmy3() -> tuple[object, dict[str, object]]:
    """(DataFrame, metadata) of pvlib's Greensboro NC TMY3 file (hourly, 8,760 rows)."""
    import pvlib

    path = Path(pvlib.__file__).resolve().parent / "data" / "723170TYA.CSV"
    data, meta = pvlib.iotools.read_tmy3(path, coerce_year=2001, map_variables=True)
    return data, meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.forecast.datasets")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export-simbench", help="export SimBench profiles to an .npz cache")
    e.add_argument("out", type=Path, nargs="?", default=SIMBENCH_CACHE)
    args = p.parse_args(argv)
    try:
        out = export_simbench(args.out)
    except ImportError:
        print("simbench is not installed in this environment "
              "(pip install -r requirements/simbench.txt in a separate venv)", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
