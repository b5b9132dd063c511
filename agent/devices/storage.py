"""Energy stores: battery / energy storage module, UPS battery, flywheel (KESU).

All three share one model of a DC store: stored energy, a usable window ``[soc_min, soc_max]``,
charge/discharge power limits and per-direction losses. They differ in their losses and limits:

- **battery**: round-trip efficiency < 1 (split evenly, ``sqrt(rte)`` each way), slow
  self-discharge, a first-order thermal model (losses heat the pack, the pack cools to ambient;
  power derates linearly within 5 °C of the limits and stops outside them), and state of health
  that fades with throughput (usable capacity = nameplate × SoH);
- **ups**: a battery with its own reserve that only an outage may use, and a takeover delay;
- **flywheel**: high power, standing (spinning) losses proportional to stored energy that drain
  it within hours — energy put in long before it is needed is mostly lost.

Sign: ``dc_w > 0`` = discharging (delivering), ``< 0`` = charging.
"""

from __future__ import annotations

import math

from agent.devices.spec import BatteryConfig, FlywheelConfig, UPSConfig

__all__ = ["StoreModel", "battery_from_spec", "flywheel_from_spec", "ups_from_spec"]

_DERATE_BAND_C = 5.0


class StoreModel:
    """A DC energy store. Energies in Wh, powers in W, time steps in s."""

    def __init__(
        self,
        *,
        capacity_wh: float,
        max_charge_w: float,
        max_discharge_w: float,
        charge_efficiency: float,
        discharge_efficiency: float,
        loss_per_s: float,
        soc: float,
        soc_min: float,
        soc_max: float,
        soh: float = 1.0,
        cycle_fade: float = 0.0,
        temperature_c: float | None = None,
        ambient_c: float = 25.0,
        temp_min_c: float = -math.inf,
        temp_max_c: float = math.inf,
        thermal_mass_j_per_k: float = 1.0,
        thermal_resistance_k_per_w: float = 1.0,
    ) -> None:
        self.nameplate_wh = float(capacity_wh)
        self.max_charge_w = float(max_charge_w)
        self.max_discharge_w = float(max_discharge_w)
        self.eta_c = float(charge_efficiency)
        self.eta_d = float(discharge_efficiency)
        self.loss_per_s = float(loss_per_s)
        self.soh = float(soh)
        self.cycle_fade = float(cycle_fade)
        self.soc_min = float(soc_min)
        self.soc_max = float(soc_max)
        self.energy_wh = float(soc) * self.capacity_wh
        self.temperature_c = temperature_c
        self.ambient_c = float(ambient_c)
        self.temp_min_c = float(temp_min_c)
        self.temp_max_c = float(temp_max_c)
        self.thermal_mass = float(thermal_mass_j_per_k)
        self.thermal_r = float(thermal_resistance_k_per_w)
        self.throughput_wh = 0.0
        self.lost_wh = 0.0

    # -- state ---------------------------------------------------------------------------

    @property
    def capacity_wh(self) -> float:
        """Usable capacity now (nameplate × SoH)."""
        return self.nameplate_wh * self.soh

    @property
    def soc(self) -> float:
        return self.energy_wh / self.capacity_wh

    def _derate(self) -> float:
        t = self.temperature_c
        if t is None:
            return 1.0
        if t < self.temp_min_c or t > self.temp_max_c:
            return 0.0
        return max(0.0, min(1.0, (t - self.temp_min_c) / _DERATE_BAND_C, (self.temp_max_c - t) / _DERATE_BAND_C))

    def dc_limits(self, dt_hint: float = 1.0) -> tuple[float, float]:
        """(largest DC charge, largest DC discharge) now, both >= 0, W.

        Zero at the SoC window's edges and outside the temperature window. ``dt_hint`` is unused
        for the limits themselves: a step that would cross an edge is cut inside :meth:`step`.
        """
        d = self._derate()
        cap = self.capacity_wh
        chg = self.max_charge_w * d if self.energy_wh < self.soc_max * cap - 1e-9 else 0.0
        dis = self.max_discharge_w * d if self.energy_wh > self.soc_min * cap + 1e-9 else 0.0
        return chg, dis

    # -- dynamics ------------------------------------------------------------------------

    def step(self, dc_w: float, dt: float) -> float:
        """Hold ``dc_w`` for ``dt`` seconds; return the average DC power actually achieved.

        The power is clamped to the limits and cut short at the SoC window's edge, so the
        store never leaves ``[soc_min, soc_max]`` through its own terminals.
        """
        if dt <= 0:
            return 0.0
        chg, dis = self.dc_limits()
        p = max(-chg, min(dis, dc_w))
        cap = self.capacity_wh
        hours = dt / 3600.0
        if p > 0:
            room = max(0.0, self.energy_wh - self.soc_min * cap) * self.eta_d
            e_out = min(p * hours, room)
            self.energy_wh -= e_out / self.eta_d
            p = e_out / hours
            loss = e_out / self.eta_d - e_out
        elif p < 0:
            room = max(0.0, self.soc_max * cap - self.energy_wh) / self.eta_c
            e_in = min(-p * hours, room)
            self.energy_wh += e_in * self.eta_c
            p = -e_in / hours
            loss = e_in - e_in * self.eta_c
        else:
            loss = 0.0
        # standing losses (self-discharge, spinning losses): exponential in stored energy
        if self.loss_per_s > 0:
            kept = math.exp(-self.loss_per_s * dt)
            standing = self.energy_wh * (1.0 - kept)
            self.energy_wh -= standing
            self.lost_wh += standing
        self.lost_wh += loss
        if p != 0:
            through = abs(p) * hours
            self.throughput_wh += through
            if self.cycle_fade:
                energy = self.energy_wh
                self.soh = max(0.05, self.soh - self.cycle_fade * through / (2.0 * self.nameplate_wh))
                ceiling = self.soc_max * self.capacity_wh
                if energy > ceiling:  # capacity faded under a full store: the excess is lost
                    self.lost_wh += energy - ceiling
                    energy = ceiling
                self.energy_wh = energy
        if self.temperature_c is not None:
            heat_w = loss / hours if hours > 0 else 0.0
            t_ss = self.ambient_c + heat_w * self.thermal_r
            tau = self.thermal_r * self.thermal_mass
            self.temperature_c = t_ss + (self.temperature_c - t_ss) * math.exp(-dt / tau)
        return p


def _per_day_to_per_s(fraction_per_day: float) -> float:
    return -math.log(1.0 - fraction_per_day) / 86400.0 if fraction_per_day > 0 else 0.0


def battery_from_spec(spec: BatteryConfig | UPSConfig) -> StoreModel:
    eta = math.sqrt(spec.round_trip_efficiency)
    return StoreModel(
        capacity_wh=spec.capacity_wh,
        max_charge_w=spec.max_charge_w,
        max_discharge_w=spec.max_discharge_w,
        charge_efficiency=eta,
        discharge_efficiency=eta,
        loss_per_s=_per_day_to_per_s(spec.self_discharge_per_day),
        soc=spec.initial_soc,
        soc_min=spec.soc_min,
        soc_max=spec.soc_max,
        soh=spec.soh,
        cycle_fade=spec.cycle_fade,
        temperature_c=spec.temperature_c,
        ambient_c=spec.ambient_c,
        temp_min_c=spec.temp_min_c,
        temp_max_c=spec.temp_max_c,
        thermal_mass_j_per_k=spec.thermal_mass_j_per_k,
        thermal_resistance_k_per_w=spec.thermal_resistance_k_per_w,
    )


ups_from_spec = battery_from_spec


def flywheel_from_spec(spec: FlywheelConfig) -> StoreModel:
    loss_per_s = -math.log(1.0 - spec.standing_loss_per_h) / 3600.0
    return StoreModel(
        capacity_wh=spec.capacity_wh,
        max_charge_w=spec.max_power_w,
        max_discharge_w=spec.max_power_w,
        charge_efficiency=spec.efficiency,
        discharge_efficiency=spec.efficiency,
        loss_per_s=loss_per_s,
        soc=spec.initial_soc,
        soc_min=spec.soc_min,
        soc_max=spec.soc_max,
    )
