"""The reserve trigger: when a site starts its reserve supply (UPS, generator), as a pure step.

The reserve is started only when the **predicted and the actual** demand both exceed what the
site can meet without it (primary supply plus the power the flywheels can give *now*, i.e. with
their stored energy counted). Once started it is held: it stops only after the need has been
gone (actual and predicted demand below the threshold less ``release_margin_w``) for
``hold_s`` seconds, and never sooner than ``hold_s`` after it started. That hold is what keeps
it from chattering on a load that hovers around the threshold.

A forecast can miss a sudden jump (its upper bound below the threshold while the measured
demand is above it). The flywheels' share of the threshold is the power they can *sustain* for
``confirm_s`` (the arbiter's ``flywheel_sustain_s``), so a demand that has stayed above the
threshold for ``confirm_s`` is one they cannot ride through: the reserve then starts on the
measured demand alone, whatever the forecast said (``confirm_s=None``: the strict AND rule).
With ``confirm_s=0`` the trigger never misses an event the measurement shows; the hold still
keeps it from chattering.

A missing or non-finite prediction counts as "predicted = actual": the trigger then acts on
the measured demand alone (safe, never later than needed), and the caller logs the fallback.

:func:`naive_trigger` is the comparison policy of ``scripts/bench_reserve.py``: start when the
actual demand exceeds the threshold, stop as soon as it does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = ["ReserveState", "naive_trigger", "reserve_trigger"]


@dataclass(frozen=True, slots=True)
class ReserveState:
    """The trigger's memory between ticks (held by the site, passed back each tick)."""

    active: bool = False
    since: float | None = None  # when it last started
    clear_since: float | None = None  # since when the need has been gone while active
    activations: int = 0
    reason: str = "reserve off"
    over_since: float | None = None  # since when measured demand has been above the threshold


def reserve_trigger(prev: ReserveState, t: float, *, actual_w: float, predicted_w: float | None,
                    threshold_w: float, hold_s: float = 60.0, release_margin_w: float = 0.0,
                    confirm_s: float | None = None) -> ReserveState:
    """Next trigger state at ``t`` (all powers W, demand >= 0)."""
    pred = predicted_w if predicted_w is not None and math.isfinite(predicted_w) else actual_w
    basis = "predicted" if pred is predicted_w else "no forecast: actual only"
    if not math.isfinite(actual_w) or not math.isfinite(threshold_w):
        # nothing trustworthy to decide on: keep what we had (a started reserve keeps running)
        return replace(prev, reason="reserve unchanged: non-finite input")
    over = actual_w > threshold_w
    over_since = (prev.over_since if prev.over_since is not None else t) if over else None
    need = over and pred > threshold_w
    if not prev.active:
        confirmed = over and confirm_s is not None and over_since is not None and t - over_since >= confirm_s
        if need or confirmed:
            why = (f"demand {actual_w:.0f} W and {basis} {pred:.0f} W above" if need else
                   f"demand {actual_w:.0f} W above for {t - over_since:.0f} s (forecast {pred:.0f} W missed it), above")
            return ReserveState(True, t, None, prev.activations + 1,
                                f"reserve started: {why} primary + flywheel {threshold_w:.0f} W", over_since)
        if prev.reason != "reserve off" or prev.over_since != over_since:
            return replace(prev, reason="reserve off", over_since=over_since)
        return prev
    still = max(actual_w, pred) > threshold_w - release_margin_w
    if still:
        return replace(prev, clear_since=None, over_since=over_since, reason=f"reserve held: demand {actual_w:.0f} W, {basis} {pred:.0f} W, "
                                                      f"threshold {threshold_w:.0f} W")
    clear = prev.clear_since if prev.clear_since is not None else t
    started = prev.since if prev.since is not None else t
    if t - clear >= hold_s and t - started >= hold_s:
        return ReserveState(False, started, None, prev.activations,
                            f"reserve stopped: need gone for {t - clear:.0f} s (hold {hold_s:.0f} s)", over_since)
    return replace(prev, clear_since=clear, over_since=over_since, reason=f"reserve held {hold_s:.0f} s after the need went")


def naive_trigger(prev: ReserveState, t: float, *, actual_w: float, threshold_w: float) -> ReserveState:
    """Start on the measured demand alone, stop as soon as it drops (no forecast, no hold)."""
    on = actual_w > threshold_w
    if on and not prev.active:
        return ReserveState(True, t, None, prev.activations + 1, "naive: demand above threshold")
    if not on and prev.active:
        return ReserveState(False, prev.since, None, prev.activations, "naive: demand below threshold")
    return prev
