"""The runtime sees the site through SitePort, the planner through PlannedSite: the real Site
provides every member of both."""

from __future__ import annotations

import asyncio
import inspect
from types import SimpleNamespace

from agent.control.planner import build_planner
from agent.site import Site
from agent.site_port import PlannedSite, SitePort
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


def test_the_planner_sees_the_site_through_planned_site() -> None:
    clock = ManualClock(1_750_000_000.0)
    site = Site.from_config([{"type": "battery", "capacity_wh": 5_000, "max_charge_w": 2_000, "max_discharge_w": 2_000},
                             {"type": "grid", "import_limit_w": 9_000.0, "export_limit_w": 4_000.0}],
                            clock, seed=1, reserve_soc=0.2)
    assert isinstance(site, PlannedSite)
    assert site.grid_limits() == (9_000.0, 4_000.0)  # the grid driver's, before any reading
    assert site.last_dt_s == 1.0  # before a second tick

    async def two_ticks() -> None:
        await site.connect()
        await site.tick()
        clock.advance(30.0)
        await site.tick()

    asyncio.run(two_ticks())
    assert site.last_dt_s == 30.0
    no_grid = Site.from_config([{"type": "battery", "capacity_wh": 5_000, "max_charge_w": 2_000,
                                 "max_discharge_w": 2_000}], clock, seed=1, reserve_soc=0.2)
    assert no_grid.grid_limits() is None
    assert build_planner(SimpleNamespace(drivers={}), clock) is None  # a fake that is no PlannedSite
