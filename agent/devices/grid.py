"""The site's grid connection: import/export limits, outages, frequency.

Sign (device sign, docs/architecture.md §6): the grid *delivers to the bus* when the site imports, so
``power_w > 0`` = import and ``power_w < 0`` = export; the site's net export is ``-power_w``.
The connection is the slack of the bus: its power is whatever the other devices leave over.
During an outage it carries nothing; the mismatch the site's own devices do not cover is
counted as unserved (deficit) or spilled (surplus) energy.
"""

from __future__ import annotations

__all__ = ["GridModel"]


class GridModel:
    def __init__(self, import_limit_w: float, export_limit_w: float, nominal_hz: float = 50.0,
                 outages: list[tuple[float, float]] | None = None) -> None:
        self.import_limit_w = float(import_limit_w)
        self.export_limit_w = float(export_limit_w)
        self.nominal_hz = float(nominal_hz)
        self.frequency_hz = float(nominal_hz)
        self.outages = sorted(outages or [])
        self.forced_outage = False
        self.outage_since: float | None = None
        self.power_w = 0.0
        self.exported_wh = 0.0
        self.imported_wh = 0.0
        self.unserved_wh = 0.0
        self.spilled_wh = 0.0

    def in_outage(self, t: float) -> bool:
        if self.forced_outage:
            return True
        return any(a <= t < b for a, b in self.outages)

    def settle(self, t: float, net_export_wh: float, net_export_w: float) -> None:
        """Book one step's energy balance of the other devices, ending at ``t``."""
        if self.in_outage(t):
            if self.outage_since is None:
                self.outage_since = t
            if net_export_wh < 0:
                self.unserved_wh += -net_export_wh
            else:
                self.spilled_wh += net_export_wh
            self.power_w = 0.0
            return
        self.outage_since = None
        if net_export_wh >= 0:
            self.exported_wh += net_export_wh
        else:
            self.imported_wh += -net_export_wh
        self.power_w = -net_export_w
