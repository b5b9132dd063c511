"""The site's energy meter at the grid connection: exported and imported Wh in fixed time bins.

Energy for a span ``[t0, t1)`` is spread over the bins it covers in proportion to time (the
power is taken as constant within a control tick). Bins live in a ring buffer covering
``retention_s`` (default 26 h: at least a day, as settlement needs); a query for a window
aligned to the bin size is exact, a misaligned edge bin counts pro rata.
"""

from __future__ import annotations

import math
from array import array

__all__ = ["MeterLog"]


class MeterLog:
    def __init__(self, resolution_s: float = 1.0, retention_s: float = 26 * 3600.0) -> None:
        if not resolution_s > 0:
            raise ValueError("meter_resolution_s: must be > 0")
        if not retention_s >= resolution_s:
            raise ValueError("meter_retention_s: must be >= meter_resolution_s")
        self.resolution_s = float(resolution_s)
        self.n = int(math.ceil(retention_s / resolution_s)) + 1
        self._bin = array("q", [-(2**62)] * self.n)
        self._exp = array("d", bytes(8 * self.n))
        self._imp = array("d", bytes(8 * self.n))
        self.total_exported_wh = 0.0
        self.total_imported_wh = 0.0
        self.first_ts: float | None = None
        self.last_ts: float | None = None

    def _slot(self, b: int) -> int:
        i = b % self.n
        if self._bin[i] != b:
            self._bin[i] = b
            self._exp[i] = 0.0
            self._imp[i] = 0.0
        return i

    def add(self, t0: float, t1: float, exported_wh: float, imported_wh: float) -> None:
        """Book energy metered over ``[t0, t1)`` (both >= 0)."""
        if exported_wh < 0 or imported_wh < 0:
            raise ValueError("metered energy must be >= 0")
        if self.first_ts is None:
            self.first_ts = t0
        self.last_ts = t1 if self.last_ts is None else max(self.last_ts, t1)
        self.total_exported_wh += exported_wh
        self.total_imported_wh += imported_wh
        res = self.resolution_s
        if t1 <= t0:
            i = self._slot(int(t0 // res))
            self._exp[i] += exported_wh
            self._imp[i] += imported_wh
            return
        b0, b1 = int(t0 // res), int(math.ceil(t1 / res)) - 1
        if b0 == b1:
            i = self._slot(b0)
            self._exp[i] += exported_wh
            self._imp[i] += imported_wh
            return
        span = t1 - t0
        for b in range(max(b0, b1 - self.n + 1), b1 + 1):
            lo = max(t0, b * res)
            hi = min(t1, (b + 1) * res)
            frac = (hi - lo) / span
            i = self._slot(b)
            self._exp[i] += exported_wh * frac
            self._imp[i] += imported_wh * frac

    def window(self, start_ts: float, end_ts: float) -> tuple[float, float]:
        """(exported_wh, imported_wh) metered over ``[start_ts, end_ts)``."""
        if end_ts < start_ts:
            raise ValueError(f"end_ts ({end_ts}) must be >= start_ts ({start_ts})")
        res = self.resolution_s
        b0, b1 = int(start_ts // res), int(math.ceil(end_ts / res)) - 1
        exp = imp = 0.0
        if self.last_ts is None:
            return exp, imp
        oldest = int(math.ceil(self.last_ts / res)) - self.n
        for b in range(max(b0, oldest), b1 + 1):
            i = b % self.n
            if self._bin[i] != b:
                continue
            lo = max(start_ts, b * res)
            hi = min(end_ts, (b + 1) * res)
            if hi <= lo:
                continue
            frac = (hi - lo) / res
            exp += self._exp[i] * frac
            imp += self._imp[i] * frac
        return exp, imp

    def covers(self, start_ts: float) -> bool:
        """Whether bins for ``start_ts`` are still retained."""
        if self.last_ts is None:
            return False
        return start_ts >= self.last_ts - (self.n - 1) * self.resolution_s
