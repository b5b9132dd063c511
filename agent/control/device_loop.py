"""The device loop of the product documents (docs/architecture.md §1), as a pure function.

Each tick the store is classified:

- below ``low_threshold``: **request** energy (the trader bids for it; the coordinator may
  route surplus to the site) — never contribute;
- above ``high_threshold`` *and* local use is low (load below ``low_use_w``, or PV already
  covering it): **contribute** the energy above the high threshold (the trader offers it);
- otherwise **hold**.

Coordinator commands are obeyed through the arbiter (market schedule, virtual-battery requests);
this loop only says what the site wants, with the energy involved.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Intent", "device_loop"]


@dataclass(frozen=True, slots=True)
class Intent:
    kind: str  # "request" | "contribute" | "hold"
    energy_wh: float  # >= 0: energy wanted (request) or offered (contribute)
    reason: str


def device_loop(soc: float | None, capacity_wh: float, load_w: float, pv_w: float, *,
                low_threshold: float, high_threshold: float, low_use_w: float) -> Intent:
    """``load_w`` >= 0 is local demand, ``pv_w`` >= 0 local generation (W)."""
    if soc is None or capacity_wh <= 0:
        return Intent("hold", 0.0, "no storage")
    if soc < low_threshold:
        return Intent("request", (low_threshold - soc) * capacity_wh,
                      f"store {soc:.0%} below low threshold {low_threshold:.0%}")
    if soc > high_threshold:
        local_use = max(0.0, load_w - pv_w)
        if load_w <= low_use_w or local_use == 0.0:
            return Intent("contribute", (soc - high_threshold) * capacity_wh,
                          f"store {soc:.0%} above high threshold {high_threshold:.0%}, local use {local_use:.0f} W")
        return Intent("hold", 0.0, f"store {soc:.0%} high but local use {local_use:.0f} W is not low")
    return Intent("hold", 0.0, f"store {soc:.0%} between thresholds")
