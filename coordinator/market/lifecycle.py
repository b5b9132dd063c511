"""The interval lifecycle as one explicit, resumable state machine (docs/operations.md).

The chain is the source of truth: each step of :class:`~coordinator.market.loop.MarketLoop`
starts by reading the interval's status from the market contract (``intervalOf`` and
``lapsed``) and :func:`next_step` decides, from that and the injected clock alone, what to do
next. A coordinator that was killed at any point therefore resumes by driving every interval
that is not final from wherever the chain says it is:

=============  ============================  ===============================================
chain status   clock                         step
=============  ============================  ===============================================
None           before the gate               ``OPEN`` (open it, then announce it)
None           at or after the gate          ``SKIP`` (never opened in time; nothing locked)
Open           any                           ``CLOSE`` (announce until the gate, then close)
Closed         before delivery start         ``COMMIT`` (clear, commit what is missing, dispatch)
Closed         delivery started, none        ``VOID`` (commit zero fills: nobody was told to
               committed yet                 deliver, so nobody forfeits; settle at once)
Cleared        any                           ``SETTLE`` (dispatch if not yet sent, wait for the
                                             end and the readings, settle)
Settled        any                           ``SETTLED`` (final)
any, lapsed    any                           ``LAPSED`` (final; owners recover their locks)
=============  ============================  ===============================================

The loop keeps its own progress (stage, whether dispatch went out, the last error) in the
store's ``lifecycle`` table; chain-derived state (``intervals``, ``orders``, ``fills``) is
written by the indexer only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

NONE, OPEN, CLOSED, CLEARED, SETTLED = range(5)  # the contract's IntervalStatus
CHAIN_NAMES = {NONE: "none", OPEN: "open", CLOSED: "closed", CLEARED: "cleared", SETTLED: "settled"}
FINAL_STAGES = ("settled", "lapsed", "skipped")
ACTIVE_STAGES = ("pending", "open", "closed", "cleared")


class Step(enum.Enum):
    OPEN = "open"
    CLOSE = "close"
    COMMIT = "commit"
    VOID = "void"
    SETTLE = "settle"
    SETTLED = "settled"
    LAPSED = "lapsed"
    SKIP = "skipped"

    @property
    def final(self) -> bool:
        return self in (Step.SETTLED, Step.LAPSED, Step.SKIP)


@dataclass(frozen=True)
class ChainState:
    """What the market contract says about one interval."""

    status: int
    live_orders: int = 0
    committed: int = 0
    clear_by: int = 0
    settle_by: int = 0
    lapsed: bool = False

    @property
    def name(self) -> str:
        return CHAIN_NAMES.get(self.status, str(self.status))


@dataclass(frozen=True)
class Times:
    """An interval's schedule on the injected clock."""

    interval: int
    interval_s: float
    gate_lead_s: float

    @property
    def start(self) -> float:
        return self.interval * self.interval_s

    @property
    def end(self) -> float:
        return self.start + self.interval_s

    @property
    def gate(self) -> float:
        return self.start - self.gate_lead_s

    @property
    def opens(self) -> float:
        return self.start - self.interval_s


def next_step(state: ChainState, now: float, times: Times) -> Step:
    """The next step for an interval in ``state`` at clock time ``now`` (see the table above)."""
    if state.status == SETTLED:
        return Step.SETTLED
    if state.lapsed:
        return Step.LAPSED
    if state.status == NONE:
        return Step.OPEN if now < times.gate else Step.SKIP
    if state.status == OPEN:
        return Step.CLOSE
    if state.status == CLOSED:
        # A partly committed interval can only be finished with the fills it started with.
        return Step.COMMIT if now < times.start or state.committed else Step.VOID
    if state.status == CLEARED:
        return Step.SETTLE
    raise ValueError(f"interval {times.interval}: unknown chain status {state.status}")


def first_new_interval(now: float, interval_s: float, gate_lead_s: float, after: int | None) -> int:
    """The first interval to open from ``now``: after ``after`` (the last one this coordinator
    planned, if any) and with at least half the usual trading time before its gate. On a fresh
    start that is the interval after next (opened at the next interval boundary); on a restart
    it is the next one that can still trade, so none is skipped that could have run."""
    base = int(now // interval_s)
    if after is None:
        return base + 2
    k = max(after + 1, base + 1)
    min_trading = 0.5 * (interval_s - gate_lead_s)
    while k * interval_s - gate_lead_s - max(now, (k - 1) * interval_s) < min_trading:
        k += 1
    return k


def backoff_s(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Bounded exponential back-off (seconds) before retry number ``attempt`` (0-based)."""
    return float(min(cap, base * (2 ** min(attempt, 16))))
