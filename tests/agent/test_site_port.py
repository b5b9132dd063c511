"""The runtime sees the site through SitePort: the real Site provides every member of it."""

from __future__ import annotations

import inspect

from agent.site import Site
from agent.site_port import SitePort
from gridswarm.clock import ManualClock


def test_site_provides_every_member_of_the_port() -> None:
    site = Site.from_config([{"type": "battery", "capacity_wh": 5_000, "max_charge_w": 2_000, "max_discharge_w": 2_000},
                             {"type": "grid"}], ManualClock(1_750_000_000.0), seed=1, reserve_soc=0.2)
    members = {n for n in vars(SitePort) if not n.startswith("_")} | set(SitePort.__annotations__)
    assert {"tick", "set_market_schedule", "storage_range", "frequency_delivered_w", "autonomous"} <= members
    for name in sorted(members):
        assert hasattr(site, name), name
        want = vars(SitePort).get(name)
        if inspect.iscoroutinefunction(want):
            assert inspect.iscoroutinefunction(getattr(site, name)), name
        elif callable(want) and not isinstance(want, property):
            assert callable(getattr(site, name)), name
    assert site.storage_range() == (site.drivers["battery1"].limits.min_w,
                                    site.drivers["battery1"].limits.max_w)
