"""Grid-frequency traces the ``sim`` grid replays (``docs/fleet.md``).

A trace is a CSV (optionally gzipped) of ``t_s,hz`` rows (``#`` lines are comments), shipped in
``agent/devices/data/`` (both synthesised by ``scripts/make_frequency_traces.py``; their headers
say how) or named by path. :class:`FrequencyTrace` maps a clock time to a frequency: the base
trace starts at ``start_ts`` and repeats when ``loop`` is set; an optional event trace
overrides it from ``event_ts`` for its length. Between samples the value is interpolated
linearly: the traces sample a continuous frequency (a grid's inertia keeps it from stepping),
so a meter read between two samples sees a value between them, not the older one held.
"""

from __future__ import annotations

import bisect
import gzip
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["BUILTIN_TRACES", "FrequencyTrace", "load_trace", "trace_from_spec"]

DATA = Path(__file__).resolve().parent / "data"
BUILTIN_TRACES = {
    "gb_normal_day": DATA / "frequency_gb_normal_day.csv.gz",
    "gb_loss_of_infeed": DATA / "frequency_gb_loss_of_infeed.csv.gz",
}


@lru_cache(maxsize=8)
def load_trace(name_or_path: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(times, frequencies) of a built-in trace name or a CSV path; ValueError names the problem."""
    path = BUILTIN_TRACES.get(name_or_path, Path(name_or_path))
    if not path.exists():
        raise ValueError(f"frequency trace {name_or_path!r}: no such built-in trace or file "
                         f"(built-in: {', '.join(BUILTIN_TRACES)})")
    opener = gzip.open if path.suffix == ".gz" else open
    ts: list[float] = []
    hz: list[float] = []
    with opener(path, "rt") as fh:  # type: ignore[operator]
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#") or line.startswith("t_s"):
                continue
            try:
                a, b = line.split(",")[:2]
                t, f = float(a), float(b)
            except ValueError as exc:
                raise ValueError(f"frequency trace {path}: line {n} is not 't_s,hz'") from exc
            if not 40.0 <= f <= 70.0 or (ts and t <= ts[-1]):
                raise ValueError(f"frequency trace {path}: line {n}: {f} Hz at {t} s is not plausible/increasing")
            ts.append(t)
            hz.append(f)
    if len(ts) < 2:
        raise ValueError(f"frequency trace {path}: needs at least two samples")
    return tuple(ts), tuple(hz)


@dataclass(frozen=True)
class FrequencyTrace:
    base: str
    start_ts: float = 0.0
    loop: bool = True
    event: str | None = None
    event_ts: float | None = None

    def __post_init__(self) -> None:
        load_trace(self.base)
        if self.event is not None:
            load_trace(self.event)
            if self.event_ts is None:
                raise ValueError("frequency_trace.event_ts: required with an event")

    @staticmethod
    def _at(name: str, rel: float, loop: bool) -> float | None:
        ts, hz = load_trace(name)
        span = ts[-1] - ts[0] + (ts[1] - ts[0])
        if rel < ts[0]:
            return None
        if rel > ts[-1]:
            if not loop:
                return None
            rel = ts[0] + (rel - ts[0]) % span
        # linear between samples: a grid's frequency cannot step (its inertia), so the trace is
        # replayed as the continuous signal it samples, not held piecewise constant
        i = max(0, bisect.bisect_right(ts, rel) - 1)
        if i + 1 < len(ts):
            t1, f1 = ts[i + 1], hz[i + 1]
        elif loop:
            t1, f1 = ts[i] + (ts[1] - ts[0]), hz[0]
        else:
            return hz[i]
        w = (rel - ts[i]) / (t1 - ts[i])
        return hz[i] + (f1 - hz[i]) * min(1.0, max(0.0, w))

    def at(self, t: float) -> float | None:
        """Frequency (Hz) at clock time ``t``; None outside the trace (then: nominal)."""
        if self.event is not None and self.event_ts is not None:
            f = self._at(self.event, t - self.event_ts, False)
            if f is not None:
                return f
        return self._at(self.base, t - self.start_ts, self.loop)


def trace_from_spec(spec: dict[str, Any] | None) -> FrequencyTrace | None:
    """A trace from a grid device's ``frequency_trace`` mapping (``base``, ``start_ts``,
    ``loop``, ``event``, ``event_ts``); ValueError names the bad field."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError("frequency_trace: must be a mapping")
    unknown = set(spec) - {"base", "start_ts", "loop", "event", "event_ts"}
    if unknown:
        raise ValueError(f"frequency_trace: unknown field(s) {', '.join(sorted(unknown))}")
    return FrequencyTrace(base=str(spec.get("base", "gb_normal_day")), start_ts=float(spec.get("start_ts", 0.0)),
                          loop=bool(spec.get("loop", True)), event=spec.get("event"),
                          event_ts=None if spec.get("event_ts") is None else float(spec["event_ts"]))
