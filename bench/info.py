"""What every benchmark records about the machine it ran on (written once, used by all)."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any


def machine(**versions: str) -> dict[str, Any]:
    """CPU model, core count, Python, platform and the 1-minute load at the start, plus any
    library ``versions`` the benchmark wants on record (figures from a shared machine are only
    comparable side by side in one run; the load says how shared it was)."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        **versions,
    }


def write_results(path: str | Path, result: dict[str, Any], indent: int = 2) -> Path:
    """Write a benchmark's figures as JSON (creating the folder) and say where on stderr."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=indent) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return out
