"""Bidirectional inverter between a DC device and the AC site bus.

Sign: ``ac_w > 0`` = delivering to the bus (DC source discharging), ``< 0`` = taking from it.
The inverter clamps a request to its rating and to what the DC side can do, and ramps towards
it; :attr:`target_w` is the setpoint it accepted and :attr:`ac_w` the power it actually reached.
"""

from __future__ import annotations

import math

__all__ = ["InverterModel"]


class InverterModel:
    __slots__ = ("rated_w", "efficiency", "ramp_w_per_s", "target_w", "ac_w")

    def __init__(self, rated_w: float, efficiency: float = 0.97, ramp_w_per_s: float = math.inf) -> None:
        if not rated_w > 0:
            raise ValueError("inverter rated_w must be > 0")
        if not 0 < efficiency <= 1:
            raise ValueError("inverter efficiency must be within (0, 1]")
        self.rated_w = float(rated_w)
        self.efficiency = float(efficiency)
        self.ramp_w_per_s = float(ramp_w_per_s)
        self.target_w = 0.0
        self.ac_w = 0.0

    def ac_limits(self, dc_charge_max_w: float, dc_discharge_max_w: float) -> tuple[float, float]:
        """(largest AC charge, largest AC discharge) given the DC side's limits, both >= 0."""
        return (min(self.rated_w, dc_charge_max_w / self.efficiency),
                min(self.rated_w, dc_discharge_max_w * self.efficiency))

    def accept(self, request_w: float, dc_charge_max_w: float, dc_discharge_max_w: float) -> float:
        """Clamp a request to the rating and the DC limits; store and return the accepted target."""
        chg, dis = self.ac_limits(dc_charge_max_w, dc_discharge_max_w)
        self.target_w = max(-chg, min(dis, request_w))
        return self.target_w

    def ramp(self, dt: float) -> float:
        """Move the AC power towards the target by at most ``ramp_w_per_s * dt``; return it."""
        if math.isinf(self.ramp_w_per_s):
            self.ac_w = self.target_w
        else:
            step = self.ramp_w_per_s * max(0.0, dt)
            self.ac_w = max(self.ac_w - step, min(self.ac_w + step, self.target_w))
        return self.ac_w

    def dc_for(self, ac_w: float) -> float:
        """DC power (source sign) needed for ``ac_w`` at the bus."""
        return ac_w / self.efficiency if ac_w > 0 else ac_w * self.efficiency

    def ac_for(self, dc_w: float) -> float:
        return dc_w * self.efficiency if dc_w > 0 else dc_w / self.efficiency
