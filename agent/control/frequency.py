"""Local frequency response (docs/architecture.md §3a): droop with a deadband, armed by the coordinator and
executed by the agent on its own, because fast-frequency products need full response within
0.5-1.3 s and the coordinator cannot be in that loop.

``response_w`` is a pure function. Sign: a frequency below nominal asks for power *into* the
grid, i.e. storage discharge (``> 0``, device sign); above nominal, charge (``< 0``).

    Δf_eff = sign(Δf) · max(0, |Δf| − deadband)
    P      = −(Δf_eff / f_nominal) / droop · P_ref,   |P| <= max_power_w

Full delivery (``P_ref``) is reached at ``|Δf| = deadband + droop · f_nominal``. With a knee
(``knee_hz``, ``knee_fraction``) the curve is piecewise linear instead: 0 at the deadband,
``knee_fraction`` at ``knee_hz``, 100 % at full delivery. GB Dynamic Containment (the product we
check against, ``docs/fleet.md``): deadband 0.015 Hz, 5 % at 0.2 Hz, 100 % at 0.5 Hz, i.e.
``dynamic_containment(p_ref_w)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DC_DEADBAND_HZ", "DC_FULL_HZ", "FREQUENCY_MODES", "FrequencyArm", "dc_droop", "dynamic_containment",
           "response_w"]

DC_DEADBAND_HZ = 0.015  # GB Dynamic Containment: no response within +-0.015 Hz
DC_KNEE_HZ = 0.2  # ... 5 % of contracted power at +-0.2 Hz
DC_KNEE_FRACTION = 0.05
DC_FULL_HZ = 0.5  # ... 100 % at +-0.5 Hz, reached within 1 s

FREQUENCY_MODES = ("standby", "grid_support", "emergency")


@dataclass(frozen=True, slots=True)
class FrequencyArm:
    """What the coordinator armed. ``mode``: ``standby`` (measure, do nothing), ``grid_support``
    (respond within the owner's reserve), ``emergency`` (respond; may go below the owner's reserve
    only if the owner opted in). ``p_ref_w``: power at 100 % droop response (W); ``max_power_w``
    caps the response. ``until_ts``: the arming expires (None = until disarmed)."""

    droop: float = 0.04
    deadband_hz: float = 0.02
    nominal_hz: float = 50.0
    p_ref_w: float = 0.0
    max_power_w: float = math.inf
    mode: str = "grid_support"
    until_ts: float | None = None
    knee_hz: float | None = None
    knee_fraction: float = 0.0

    def __post_init__(self) -> None:
        checks = (
            ("droop", 0 < self.droop <= 1, "must be within (0, 1]"),
            ("deadband_hz", 0 <= self.deadband_hz <= 1, "must be within [0, 1]"),
            ("nominal_hz", 45 <= self.nominal_hz <= 65, "must be within [45, 65]"),
            ("p_ref_w", self.p_ref_w >= 0 and math.isfinite(self.p_ref_w), "must be >= 0"),
            ("max_power_w", self.max_power_w >= 0, "must be >= 0"),
            ("mode", self.mode in FREQUENCY_MODES, f"must be one of {', '.join(FREQUENCY_MODES)}"),
            ("knee_hz", self.knee_hz is None or self.deadband_hz < self.knee_hz < self.full_hz,
             "must lie between the deadband and full delivery"),
            ("knee_fraction", 0 <= self.knee_fraction <= 1, "must be within [0, 1]"),
        )
        for name, ok, msg in checks:
            if not ok:
                raise ValueError(f"{name}: {msg}, got {getattr(self, name)!r}")

    @property
    def full_hz(self) -> float:
        """|Δf| (Hz) at which the response reaches ``p_ref_w``."""
        return self.deadband_hz + self.droop * self.nominal_hz

    def active(self, t: float) -> bool:
        return self.mode != "standby" and (self.until_ts is None or t < self.until_ts)


def response_w(arm: FrequencyArm, frequency_hz: float) -> float:
    """Droop response to ``frequency_hz`` (W, device sign; 0 inside the deadband)."""
    df = frequency_hz - arm.nominal_hz
    beyond = abs(df) - arm.deadband_hz
    if beyond <= 1e-9:  # inside the deadband (with float slack: 50.02 - 50 > 0.02)
        return 0.0
    if arm.knee_hz is None:
        eff = math.copysign(beyond, df)
        p = -(eff / arm.nominal_hz) / arm.droop * arm.p_ref_w
    else:
        d, k, full = abs(df), arm.knee_hz, arm.full_hz
        if d <= k:
            frac = arm.knee_fraction * (d - arm.deadband_hz) / (k - arm.deadband_hz)
        else:
            frac = arm.knee_fraction + (1 - arm.knee_fraction) * min(1.0, (d - k) / (full - k))
        p = -math.copysign(frac, df) * arm.p_ref_w
    cap = arm.max_power_w
    return max(-cap, min(cap, p))


def dc_droop(nominal_hz: float = 50.0) -> float:
    """The droop that gives full delivery at ±0.5 Hz beyond a 0.015 Hz deadband."""
    return (DC_FULL_HZ - DC_DEADBAND_HZ) / nominal_hz


def dynamic_containment(p_ref_w: float, *, nominal_hz: float = 50.0, mode: str = "grid_support",
                        until_ts: float | None = None) -> FrequencyArm:
    """An arm on GB Dynamic Containment's delivery curve for ``p_ref_w`` of contracted power."""
    return FrequencyArm(droop=dc_droop(nominal_hz), deadband_hz=DC_DEADBAND_HZ, nominal_hz=nominal_hz,
                        p_ref_w=p_ref_w, max_power_w=p_ref_w, mode=mode, until_ts=until_ts,
                        knee_hz=DC_KNEE_HZ, knee_fraction=DC_KNEE_FRACTION)
