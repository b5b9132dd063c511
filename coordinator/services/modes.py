"""The fleet's mode: standby / support / emergency (``docs/fleet.md``).

The operator sets a base mode. A measured event (a site reporting ``|f - nominal| >=
emergency_hz``) lifts ``support`` to ``emergency``; it drops back ``hold_s`` after the last such
reading. ``standby`` is never lifted automatically: a fleet not in service stays out.
Each mode maps to the agents' arm mode (``standby``, ``grid_support``, ``emergency``).
"""

from __future__ import annotations

MODES = ("standby", "support", "emergency")
ARM_MODE = {"standby": "standby", "support": "grid_support", "emergency": "emergency"}


class ModeController:
    def __init__(self, base: str = "support", *, emergency_hz: float = 0.2, hold_s: float = 300.0,
                 nominal_hz: float = 50.0) -> None:
        if base not in MODES:
            raise ValueError(f"mode: must be one of {', '.join(MODES)}, got {base!r}")
        self.base = base
        self.emergency_hz = emergency_hz
        self.hold_s = hold_s
        self.nominal_hz = nominal_hz
        self.event_until: float | None = None

    def set_base(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
        self.base = mode

    def measured(self, hz: float, t: float) -> bool:
        """A measured frequency; True when it is an event (outside the emergency band)."""
        if abs(hz - self.nominal_hz) >= self.emergency_hz:
            self.event_until = max(self.event_until or t, t + self.hold_s)
            return True
        return False

    def mode(self, t: float) -> str:
        if self.base == "support" and self.event_until is not None and t < self.event_until:
            return "emergency"
        return self.base
