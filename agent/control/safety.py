"""The device safety envelope (docs/architecture.md §4, layer 1): applied last, always wins.

Pure functions over one storage device's view: power within what the device can do now (its
rating, SoC window and temperature window are already folded into the telemetry's
``available_*`` figures by the driver), within its static setpoint limits, and within its ramp
rate since the last applied setpoint. The grid connection's import/export limits are enforced
site-wide by the arbiter (curtail PV, shed load).
"""

from __future__ import annotations

import math

__all__ = ["clamp_storage", "ramp_clamp"]


def ramp_clamp(target_w: float, prev_w: float, ramp_w_per_s: float, dt: float) -> float:
    """Move from ``prev_w`` towards ``target_w`` by at most ``ramp_w_per_s * dt``."""
    if math.isinf(ramp_w_per_s) or dt <= 0:
        return target_w if math.isinf(ramp_w_per_s) else prev_w
    step = ramp_w_per_s * dt
    return max(prev_w - step, min(prev_w + step, target_w))


def clamp_storage(target_w: float, *, max_charge_w: float, max_discharge_w: float, min_w: float, max_w: float,
                  prev_w: float, ramp_w_per_s: float, dt: float) -> tuple[float, str | None]:
    """Clamp a storage setpoint into the envelope; return (value, why it was clamped or None)."""
    lo = max(-max_charge_w, min_w)
    hi = min(max_discharge_w, max_w)
    if lo > hi:  # inconsistent telemetry: do nothing rather than guess
        return 0.0, "envelope empty: idle"
    value = max(lo, min(hi, target_w))
    why: str | None = None
    if value != target_w:
        why = (f"power/SoC/temperature limit: {target_w:.0f} W clamped to {value:.0f} W "
               f"(charge <= {-lo:.0f} W, discharge <= {hi:.0f} W)")
    # the envelope beats the ramp: a device at its SoC edge stops at once
    ramped = max(lo, min(hi, ramp_clamp(value, prev_w, ramp_w_per_s, dt)))
    if ramped != value:
        why = f"ramp limit {ramp_w_per_s:.0f} W/s: {value:.0f} W reached {ramped:.0f} W"
        value = ramped
    return value, why
