"""Where a long-running process's memory goes, on demand (docs/operations.md, memory).

Start the process with ``PYTHONTRACEMALLOC=1`` (Python then records where each allocation was
made; it costs CPU and memory, so not in normal running), then ``kill -USR2 PID``: the process
logs the source lines whose allocations grew most since the previous ``USR2`` (or since the
start), with their size and count. Without tracemalloc the signal only logs how to turn it on.
"""

from __future__ import annotations

import logging
import signal
import tracemalloc
from typing import Any

logger = logging.getLogger(__name__)

TOP = 15


class MemoryDump:
    def __init__(self, top: int = TOP) -> None:
        self.top = top
        self._last: tracemalloc.Snapshot | None = None

    def dump(self) -> list[str]:
        """Log (and return) the lines whose allocations grew most since the last dump."""
        if not tracemalloc.is_tracing():
            msg = "memory dump: start the process with PYTHONTRACEMALLOC=1 to see where memory goes"
            logger.warning(msg)
            return [msg]
        snap = tracemalloc.take_snapshot().filter_traces(
            (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>"))
        )
        current, peak = tracemalloc.get_traced_memory()
        if self._last is None:
            stats: list[Any] = snap.statistics("lineno")[: self.top]
            lines = [f"{s.traceback[0].filename}:{s.traceback[0].lineno} {s.size / 1024:.0f} KiB in {s.count}"
                     for s in stats]
            head = "since start"
        else:
            diffs = snap.compare_to(self._last, "lineno")[: self.top]
            lines = [f"{d.traceback[0].filename}:{d.traceback[0].lineno} {d.size_diff / 1024:+.0f} KiB "
                     f"({d.size / 1024:.0f} KiB in {d.count}, {d.count_diff:+d})" for d in diffs]
            head = "growth since the last dump"
        self._last = snap
        logger.warning("memory dump (%s; traced %.1f MiB, peak %.1f MiB):\n  %s", head, current / 2**20,
                       peak / 2**20, "\n  ".join(lines))
        return lines


def install(sig: int = signal.SIGUSR2) -> MemoryDump:
    """Dump on ``sig`` (from the main thread, where Python runs signal handlers)."""
    dumper = MemoryDump()
    signal.signal(sig, lambda *_: dumper.dump())
    return dumper
