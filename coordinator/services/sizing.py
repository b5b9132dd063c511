"""Sizing the fleet's frequency response (pure functions, ``docs/fleet.md``).

A unit (one agent site) can hold ``max_rate`` W: its healthy storage's available discharge
power less what it already delivers for its own site, capped by what its energy above the
owner's reserve sustains for ``sustain_s``. Given
``required`` W for the fleet, each unit gets

    share_i = min(max_rate_i, required * max_rate_i / sum(max_rate))

so shares are proportional to headroom, no unit is asked beyond its headroom, and a fleet
short of headroom gives everything it has (the shortfall is reported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Sizing", "device_reasons", "max_rate_w", "size_service"]


@dataclass(frozen=True)
class Sizing:
    required_w: float
    available_w: float
    shares: dict[str, float] = field(default_factory=dict)

    @property
    def armed_w(self) -> float:
        return sum(self.shares.values())

    @property
    def shortfall_w(self) -> float:
        return max(0.0, self.required_w - self.armed_w)


def device_reasons(dev: dict[str, Any], alarms: set[str], *, min_soh: float,
                   temperature_c: tuple[float, float]) -> list[str]:
    """Why a storage device may not serve now (empty: healthy)."""
    reasons = [f"alarm {a}" for a in sorted(alarms)]
    if dev.get("status") not in (None, "ok"):
        reasons.append(f"status {dev['status']}")
    soh = dev.get("soh")
    if soh is not None and soh < min_soh:
        reasons.append(f"state of health {soh:.0%} < {min_soh:.0%}")
    t = dev.get("temperature_c")
    lo, hi = temperature_c
    if t is not None and not lo <= t <= hi:
        reasons.append(f"temperature {t:.1f} C outside [{lo:g}, {hi:g}] C")
    return reasons


def max_rate_w(devices: dict[str, dict[str, Any]], healthy: set[str], sustain_s: float, *,
               below_reserve: bool = False, response_w: float = 0.0) -> float:
    """Response a unit can hold (W) from its healthy storage devices' headroom: available
    discharge power less what they already deliver for the site's own use (``response_w``, the
    frequency response they deliver now, is part of the service and counts as headroom), capped
    by each device's rating and by what its energy above the reserve sustains for ``sustain_s``.
    With ``below_reserve`` (an emergency, owner opted in) energy down to empty counts too."""
    spare = ceiling = 0.0
    for dev_id, d in devices.items():
        if dev_id not in healthy or d.get("kind") not in ("battery", "ups", "flywheel"):
            continue
        energy = d.get("usable_wh") or 0.0
        if below_reserve and d.get("soc") is not None and d.get("capacity_wh"):
            energy = max(energy, d["soc"] * d["capacity_wh"])
        top = max(0.0, min(d.get("max_discharge_w") or 0.0, d.get("rated_w") or math.inf,
                           energy * 3600.0 / sustain_s))
        ceiling += top
        spare += max(0.0, min(top, (d.get("max_discharge_w") or 0.0) - max(0.0, d.get("power_w") or 0.0)))
    return max(0.0, min(spare + max(0.0, response_w), ceiling))


def size_service(max_rates: dict[str, float], required_w: float) -> Sizing:
    """Each unit's share of ``required_w`` (see the module docstring)."""
    if not math.isfinite(required_w) or required_w < 0:
        raise ValueError(f"required_w: must be a finite number >= 0, got {required_w!r}")
    rates = {k: max(0.0, v) for k, v in max_rates.items()}
    total = sum(rates.values())
    if total <= 0:
        return Sizing(required_w, 0.0, {k: 0.0 for k in rates})
    shares = {k: min(r, required_w * r / total) for k, r in rates.items()}
    return Sizing(required_w, total, shares)
