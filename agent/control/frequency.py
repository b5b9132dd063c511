"""Local frequency response (K4, seed 003): droop with a deadband, armed by the coordinator and
executed by the agent on its own, because fast-frequency products need full response within
0.5-1.3 s and the coordinator cannot be in that loop.

``response_w`` is a pure function. Sign: a frequency below nominal asks for power *into* the
grid, i.e. storage discharge (``> 0``, device sign); above nominal, charge (``< 0``).

    Δf_eff = sign(Δf) · max(0, |Δf| − deadband)
    P      = −(Δf_eff / f_nominal) / droop · P_ref,   |P| <= max_power_w
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["FREQUENCY_MODES", "FrequencyArm", "response_w"]

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

    def __post_init__(self) -> None:
        checks = (
            ("droop", 0 < self.droop <= 1, "must be within (0, 1]"),
            ("deadband_hz", 0 <= self.deadband_hz <= 1, "must be within [0, 1]"),
            ("nominal_hz", 45 <= self.nominal_hz <= 65, "must be within [45, 65]"),
            ("p_ref_w", self.p_ref_w >= 0 and math.isfinite(self.p_ref_w), "must be >= 0"),
            ("max_power_w", self.max_power_w >= 0, "must be >= 0"),
            ("mode", self.mode in FREQUENCY_MODES, f"must be one of {', '.join(FREQUENCY_MODES)}"),
        )
        for name, ok, msg in checks:
            if not ok:
                raise ValueError(f"{name}: {msg}, got {getattr(self, name)!r}")

    def active(self, t: float) -> bool:
        return self.mode != "standby" and (self.until_ts is None or t < self.until_ts)


def response_w(arm: FrequencyArm, frequency_hz: float) -> float:
    """Droop response to ``frequency_hz`` (W, device sign; 0 inside the deadband)."""
    df = frequency_hz - arm.nominal_hz
    beyond = abs(df) - arm.deadband_hz
    if beyond <= 1e-9:  # inside the deadband (with float slack: 50.02 - 50 > 0.02)
        return 0.0
    eff = math.copysign(beyond, df)
    p = -(eff / arm.nominal_hz) / arm.droop * arm.p_ref_w
    cap = arm.max_power_w
    return max(-cap, min(cap, p))
