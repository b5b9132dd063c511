"""Site loads. **All three profiles are synthetic** (no package ships real household, commercial
or data-centre traces at this resolution; docs/forecasting.md lists the real data that ships):
they are shaped after common knowledge of such loads, not measured.

- ``household``: base load, a morning and a larger evening peak (later at weekends),
  minute-level noise and random appliance events (kettle, oven: 1.5-3 kW for 2-20 min).
- ``commercial``: office/retail hours 07-19 on weekdays, HVAC-like afternoon bump, low nights
  and weekends, small noise.
- ``datacentre``: one rack: high flat IT load with a small diurnal swing and **bursts** (batch
  jobs: +20..45 % of peak for 10-60 s, starting in ~2 % of 10-second slots).

Every value is a pure function of (seed, time): the same seed gives the same trace whatever the
sampling rate. ``expected_w`` is the same shape without noise and with the bursts' mean, for
forecasts. ``power_w`` is consumption as a **negative** number (device sign, docs/architecture.md §6).

Load shedding: ``sheddable_fraction`` of the demand is non-critical; a ceiling set by
:meth:`LoadModel.set_limit` sheds only that part (critical demand is always served).
"""

from __future__ import annotations

import math

from agent.devices._noise import uniform

__all__ = ["LoadModel", "PROFILES"]

PROFILES = ("household", "commercial", "datacentre")

_BURST_SLOT_S = 10.0
_BURST_P = 0.02
_BURST_MAX_SLOTS = 6


def _bump(h: float, centre: float, width: float) -> float:
    d = (h - centre + 12.0) % 24.0 - 12.0
    return math.exp(-0.5 * (d / width) ** 2)


class LoadModel:
    def __init__(self, profile: str, peak_w: float, *, seed: int, stream: int = 0,
                 sheddable_fraction: float = 0.0, utc_offset_h: float = 0.0) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown load profile {profile!r} (known: {', '.join(PROFILES)})")
        self.profile = profile
        self.peak_w = float(peak_w)
        self.seed = int(seed)
        self.stream = int(stream)
        self.sheddable_fraction = float(sheddable_fraction)
        self.utc_offset_s = float(utc_offset_h) * 3600.0
        self.limit_w = math.inf  # consumption ceiling (>= 0), applies to the sheddable part only
        self._cache_t = math.nan
        self._cache_v = 0.0

    # -- shape ---------------------------------------------------------------------------

    def _local(self, t: float) -> tuple[float, int]:
        local = t + self.utc_offset_s
        hour = (local % 86400.0) / 3600.0
        weekday = (int(local // 86400.0) + 3) % 7  # 1970-01-01 was a Thursday (3)
        return hour, weekday

    def _shape(self, t: float) -> float:
        h, wd = self._local(t)
        weekend = wd >= 5
        if self.profile == "household":
            shift = 1.5 if weekend else 0.0
            return 0.12 + 0.18 * _bump(h, 7.5 + shift, 1.0) + 0.35 * _bump(h, 19.0, 1.8) + 0.08 * _bump(h, 13.0, 2.0)
        if self.profile == "commercial":
            if weekend:
                return 0.25 + 0.05 * _bump(h, 12.0, 3.0)
            open_ = 1.0 / (1.0 + math.exp(-(h - 7.0) * 2.0)) - 1.0 / (1.0 + math.exp(-(h - 19.0) * 2.0))
            return 0.25 + 0.55 * open_ + 0.15 * _bump(h, 15.0, 2.0)
        return 0.70 + 0.04 * _bump(h, 14.0, 4.0)

    def expected_w(self, t: float) -> float:
        """Mean demand at ``t`` (>= 0, W): the shape without noise, with the mean of events/bursts."""
        base = self._shape(t)
        if self.profile == "household":
            base += 0.06  # mean of appliance events
        elif self.profile == "datacentre":
            base += _BURST_P * 3.5 * 0.325
        return self.peak_w * base

    def demand_w(self, t: float) -> float:
        """Demand at ``t`` (>= 0, W), before shedding."""
        if t == self._cache_t:
            return self._cache_v
        s = self.seed
        base = self._shape(t)
        if self.profile == "household":
            minute = int(t // 60.0)
            noise = 1.0 + 0.3 * (uniform(s, self.stream * 8 + 1, minute) - 0.5)
            v = base * noise
            slot = int(t // 900.0)  # one possible appliance event per 15 min
            u = uniform(s, self.stream * 8 + 2, slot)
            if u < 0.25:
                start = slot * 900.0 + 600.0 * uniform(s, self.stream * 8 + 3, slot)
                length = 120.0 + 1080.0 * uniform(s, self.stream * 8 + 4, slot)
                if start <= t < start + length:
                    v += (0.3 + 0.3 * uniform(s, self.stream * 8 + 5, slot))
        elif self.profile == "commercial":
            minute = int(t // 60.0)
            v = base * (1.0 + 0.1 * (uniform(s, self.stream * 8 + 1, minute) - 0.5))
        else:
            slot = int(t // _BURST_SLOT_S)
            v = base * (1.0 + 0.02 * (uniform(s, self.stream * 8 + 1, slot) - 0.5))
            for k in range(_BURST_MAX_SLOTS):
                j = slot - k
                if uniform(s, self.stream * 8 + 2, j) < _BURST_P:
                    n = 1 + int(uniform(s, self.stream * 8 + 3, j) * _BURST_MAX_SLOTS)
                    if k < n:
                        v += 0.2 + 0.25 * uniform(s, self.stream * 8 + 4, j)
                        break
        v = max(0.0, min(v, 1.2)) * self.peak_w
        self._cache_t, self._cache_v = t, v
        return v

    # -- shedding ------------------------------------------------------------------------

    def critical_w(self, t: float) -> float:
        return self.demand_w(t) * (1.0 - self.sheddable_fraction)

    def set_limit(self, limit_w: float) -> float:
        """Set the consumption ceiling (W >= 0; ``inf`` = no shedding); return it."""
        self.limit_w = max(0.0, limit_w)
        return self.limit_w

    def served_w(self, t: float) -> float:
        d = self.demand_w(t)
        if self.limit_w >= d:
            return d
        return max(d * (1.0 - self.sheddable_fraction), self.limit_w)

    def power_w(self, t: float) -> float:
        """Device sign: consumption is negative."""
        return -self.served_w(t)


