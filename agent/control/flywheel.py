"""Flywheel (KESU) policy for one tick, as a pure function (layer 4 of the arbiter).

Given the site's import with storage idle and the level above which import is a peak (the
planner's shaving threshold, or the grid connection limit), every flywheel gets a setpoint:

1. **Peak**: the power above the threshold is *shared* among the flywheels, each within what
   its power and stored energy allow (water-filling, weighted by energy above its floor). The
   flywheels together never give more than the peak: two 10 kW flywheels on a 9.5 kW peak give
   9.5 kW in total, not 19 kW.
2. **Pre-charge** for a predicted peak ``(start, end, extra_w)``: enough energy for the peak,
   split by capacity, charged **as late as the charge power and ramp allow** (standing losses
   grow with the time energy sits in the rotor) and never earlier than
   :func:`precharge_lead_s`, only within the import headroom below the threshold so charging
   does not make a peak of its own.
3. **Readiness**: below ``readiness_soc`` a flywheel recharges when it is cheap and safe — the
   site imports below the threshold (or has PV surplus) — at a gentle rate within the
   headroom; this also makes up the standing losses, so a flywheel is not found empty when an
   unpredicted peak arrives.
4. Otherwise it rests.

Outage bridging (flywheel first, then the UPS) stays in the arbiter, which sees the deficit.
Sign: device sign (+ = delivering to the bus). Units W, Wh, s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent.control.allocate import allocate as _allocate

if TYPE_CHECKING:
    from agent.control.arbiter import StoreView

__all__ = ["discharge_cap", "plan_flywheels", "precharge_lead_s", "sustainable_w"]

_EPS = 1e-6
Plan = tuple[float, tuple[str, str]]


def precharge_lead_s(standing_loss_per_h: float | None, max_loss: float) -> float:
    """Longest time ahead of a peak worth charging a flywheel: standing losses over the lead
    time stay below ``max_loss`` of the energy put in."""
    if not standing_loss_per_h:
        return 3600.0
    per_s = -math.log(1.0 - standing_loss_per_h) / 3600.0
    return -math.log(1.0 - max_loss) / per_s


def discharge_cap(s: StoreView, dt: float) -> float:
    """Largest discharge (W AC) over the coming tick without going below ``soc_min``."""
    above_wh = (s.soc - s.soc_min) * s.capacity_wh
    if above_wh <= 1e-9:
        return 0.0
    hours = max(dt, 1e-3) / 3600.0
    return max(0.0, min(s.max_discharge_w, s.max_w, above_wh * s.discharge_efficiency / hours))


def sustainable_w(s: StoreView, duration_s: float) -> float:
    """Power a flywheel can hold for ``duration_s`` with the energy it has (W AC)."""
    above_wh = max(0.0, (s.soc - s.soc_min) * s.capacity_wh) * s.discharge_efficiency
    return max(0.0, min(s.max_discharge_w, s.max_w, above_wh * 3600.0 / max(duration_s, 1e-3)))


def _charge_cap(s: StoreView) -> float:
    return max(0.0, min(s.max_charge_w, -s.min_w))


def plan_flywheels(flys: Sequence[StoreView], *, t: float, dt: float, excess_w: float, headroom_w: float,
                   spikes: Sequence[tuple[float, float, float]] = (), readiness_soc: float | None = None,
                   max_precharge_loss: float = 0.05) -> list[Plan]:
    """One ``(power_w, (source, reason))`` per flywheel, in order.

    ``excess_w`` >= 0: site import above the peak threshold now (what the flywheels should
    cover). ``headroom_w``: import that may be added without crossing the threshold (charging
    budget; <= 0 means no charging). ``spikes``: predicted peaks ``(start, end, extra_w)``.
    """

    n = len(flys)
    if n == 0:
        return []
    flys = list(flys)
    if excess_w > _EPS:
        caps = [discharge_cap(s, dt) for s in flys]
        shares = _allocate(excess_w, flys, caps, [max(0.0, s.soc - s.soc_min) * s.capacity_wh for s in flys])
        covered = sum(shares)
        why = f"flywheels share a peak of {excess_w:.0f} W over {n}: {covered:.0f} W covered"
        if covered < excess_w - 1.0:
            why += f", {excess_w - covered:.0f} W left (flywheels short of power or energy)"
        return [(w, ("local", why)) for w in shares]

    budget = max(0.0, headroom_w)
    out: list[Plan] = [(0.0, ("idle", "flywheel resting"))] * n
    want = [0.0] * n
    reasons: list[tuple[str, str]] = [("idle", "flywheel resting")] * n
    cap_total = sum(s.capacity_wh for s in flys) or 1.0
    lead = min((precharge_lead_s(s.standing_loss_per_h, max_precharge_loss) for s in flys), default=3600.0)
    spike = next(((a, b, w) for a, b, w in sorted(spikes) if b > t and a - lead <= t < a and w > 0), None)
    for i, s in enumerate(flys):
        full_w = _charge_cap(s)
        eff = max(s.charge_efficiency, 1e-6)
        if spike is not None:
            start, end, extra = spike
            need_wh = extra * (end - start) / 3600.0 / max(s.discharge_efficiency, 1e-6) * s.capacity_wh / cap_total
            target = min(s.soc_max, s.soc_min + need_wh / s.capacity_wh)
            gap_wh = (target - s.soc) * s.capacity_wh
            if gap_wh > 1e-6 and full_w > 0:
                ramp_s = full_w / s.ramp_w_per_s if math.isfinite(s.ramp_w_per_s) and s.ramp_w_per_s > 0 else 0.0
                charge_s = gap_wh * 3600.0 / (full_w * eff)
                # latest moment to start: charge time at full power, its ramp up, two ticks of slack
                latest = start - charge_s - ramp_s - 2.0 * max(dt, 1.0)
                if t >= latest:
                    want[i] = full_w
                    reasons[i] = ("local", f"flywheel pre-charge for a predicted peak at {start:.0f} "
                                           f"(+{extra:.0f} W, {need_wh:.0f} Wh), as late as {full_w:.0f} W allows")
                    continue
                reasons[i] = ("local", f"pre-charge deferred: peak in {start - t:.0f} s, charging takes "
                                       f"{charge_s + ramp_s:.0f} s (standing losses)")
            elif gap_wh <= 1e-6:
                reasons[i] = ("local", "flywheel charged and waiting for a predicted peak")
                continue
        if readiness_soc is not None and s.soc < readiness_soc - 1e-4 and full_w > 0:
            gap_wh = (readiness_soc - s.soc) * s.capacity_wh
            # gentle: reach readiness in about five minutes, at least 5 % of the charge power
            rate = max(gap_wh * 3600.0 / 300.0 / eff, 0.05 * full_w)
            want[i] = min(full_w, rate)
            reasons[i] = ("local", f"flywheel readiness: recharge to {readiness_soc:.0%} "
                                   f"(SoC {s.soc:.0%}) while import is below the peak threshold")
    total = sum(want)
    if total > _EPS:
        scale = min(1.0, budget / total)
        for i in range(n):
            if want[i] > 0:
                if scale <= _EPS:
                    out[i] = (0.0, ("local", reasons[i][1].split(":")[0] + " waits: no import headroom"))
                else:
                    out[i] = (-want[i] * scale, reasons[i])
            else:
                out[i] = (0.0, reasons[i])
    else:
        out = [(0.0, r) for r in reasons]
    return out
