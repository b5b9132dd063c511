"""Whether the agent accepts a dispatch from the coordinator: a pure check (no I/O, no clock).

A dispatch is a committed net-export schedule for one delivery interval. The agent applies it
only when it concerns our own order in that interval, no fill names another order or exceeds
ours, and its window has not ended; otherwise it is refused with the reason and changes nothing.
After this check the site still refuses a target outside its grid connection's limits
(:meth:`agent.site.Site.set_market_schedule`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gridswarm.messages import Dispatch

__all__ = ["dispatch_refusal"]


def dispatch_refusal(d: Dispatch, mine: Mapping[str, Any] | None, now: float) -> str:
    """The reason to refuse ``d``, or ``""`` to accept it.

    ``mine``: our order in ``d.interval`` as the agent store keeps it (``order_id``, ``qty_wh``),
    None when we have none; ``now``: the clock's time (s)."""
    if mine is None:
        return f"no order of ours in interval {d.interval}"
    if any(str(f.order_id) != str(mine["order_id"]) for f in d.fills):
        return "dispatch names orders that are not ours"
    if any(f.qty_wh > mine["qty_wh"] for f in d.fills):
        return "dispatch fills exceed our order"
    if d.end <= now:
        return "dispatch window is already over"
    return ""
