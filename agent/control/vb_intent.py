"""The device loop's intent shapes the site's virtual-battery traffic (docs/fleet.md).

The device loop (:mod:`agent.control.device_loop`) says every tick whether the site's storage
wants energy (**request**, below its low threshold), has some to give (**contribute**, above its
high threshold with low local use) or neither (**hold**). For the virtual battery that means:

- **borrowing** (:func:`borrow_request_w`): a site asks the fleet for what its own storage cannot
  cover (load less PV less what the storage can give above the owner's reserve,
  :func:`agent.fleet_link.borrow_need_w`); when the device loop requests energy, the request
  also carries what the store wants to get back to its low threshold over the window, within its
  charge power; a site whose device loop contributes asks for no refill (it has energy to
  spare), only for the power its storage cannot give (a full 100 W battery under a 1.5 kW load);
- **lending** (:func:`lend_allowed`): a lender grant is refused while the device loop requests
  energy (the store is below its low threshold: lending would drain it further), and when the
  energy asked exceeds what the storage holds above the owner's reserve less what the site keeps
  for itself until the grant ends (its own draw ahead, :func:`agent.fleet_link.draw_ahead_wh`,
  and grants it already promised).

Units W, Wh, s.
"""

from __future__ import annotations

from typing import Any

from agent.fleet_link import borrow_need_w

__all__ = ["borrow_request_w", "lend_allowed"]


def _storage(state: Any, site: Any) -> tuple[float, float]:
    """(charge power the writable storage can take now, energy above the owner's reserve)."""
    charge = above = 0.0
    for dev_id, tel in state.devices.items():
        d = site.drivers.get(dev_id)
        if d is None or not d.kind.is_storage or not d.writable:
            continue
        charge += max(0.0, float(tel.available_charge_w or 0.0))
        if tel.soc is not None and tel.capacity_wh:
            above += max(0.0, (float(tel.soc) - site.control.reserve_soc) * float(tel.capacity_wh))
    return charge, above


def borrow_request_w(state: Any, site: Any, duration_s: float) -> tuple[float, str]:
    """Power (W) to ask the fleet for over a window of ``duration_s``, and why."""
    intent = state.intent
    shortfall = borrow_need_w(state, site)
    if intent.kind == "contribute":  # energy to spare, but its power may still fall short of the load
        return shortfall, f"shortfall {shortfall:.0f} W (no refill: device loop contributes, {intent.reason})"
    if intent.kind == "request" and duration_s > 0:
        charge, _above = _storage(state, site)
        refill = min(charge, intent.energy_wh * 3600.0 / duration_s)
        return shortfall + refill, (f"shortfall {shortfall:.0f} W + {refill:.0f} W to refill the store "
                                    f"({intent.reason})")
    return shortfall, f"shortfall {shortfall:.0f} W"


def lend_allowed(state: Any, site: Any, energy_wh: float, *, keep_wh: float = 0.0) -> tuple[bool, str]:
    """May the site lend ``energy_wh`` now? (ok, reason). ``keep_wh``: what the site needs for
    itself until the grant ends (its own draw ahead and what it already promised to lend)."""
    if state is None:
        return False, "no site state yet"
    intent = state.intent
    if intent.kind == "request":
        return False, f"device loop requests energy ({intent.reason}): cannot lend"
    _charge, above = _storage(state, site)
    if energy_wh + keep_wh > above + 1e-6:
        kept = f" less {keep_wh:.0f} Wh the site keeps for itself" if keep_wh > 0 else ""
        return False, f"{energy_wh:.0f} Wh asked, {above:.0f} Wh above the owner's reserve{kept}"
    return True, ""
