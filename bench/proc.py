"""What a benchmark reads about another process from ``/proc`` (Linux): its memory, CPU time
and open files. Each returns 0 once the process is gone."""

from __future__ import annotations

import os
from pathlib import Path


def status_kb(pid: int, key: str = "VmRSS") -> int:
    """A ``/proc/<pid>/status`` figure in kB: ``VmRSS`` (resident now) or ``VmHWM`` (its peak)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kb(pid: int) -> int:
    """Resident memory of a process (kB)."""
    return status_kb(pid, "VmRSS")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0
