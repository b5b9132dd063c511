"""What the agent runtime and its parts (trader, planner, fleet link, remote config, fast path)
may ask of a site: typed protocols, so none of them probes the site with ``getattr`` or reads
its private fields.

:class:`agent.site.Site` implements both; a test may hand the runtime any object that
implements :class:`SitePort` (the runtime builds a planner only for a site that is also a
:class:`PlannedSite`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agent.control.arbiter import ControlConfig
    from agent.drivers.base import Driver
    from agent.site import SiteState

__all__ = ["PlannedSite", "SitePort"]


class SitePort(Protocol):
    control: ControlConfig
    drivers: Mapping[str, Driver]
    frequency_delivered_w: float

    @property
    def last_state(self) -> SiteState | None: ...

    @property
    def autonomous(self) -> bool: ...

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def tick(self) -> SiteState: ...

    def set_autonomous(self, autonomous: bool) -> None: ...

    def set_market_schedule(self, start_ts: float, end_ts: float, export_w: float, *, reason: str = "",
                            delivered_wh: float = 0.0) -> None: ...

    def meter_window(self, start_ts: float, end_ts: float) -> tuple[float, float]: ...

    def expected_net_wh(self, start_ts: float, end_ts: float) -> float: ...

    def available_export_wh(self, start_ts: float, end_ts: float) -> float: ...

    def storage_range(self) -> tuple[float, float]: ...

    def arm_frequency_response(self, **kw: Any) -> Any: ...

    def disarm_frequency_response(self) -> None: ...


@runtime_checkable
class PlannedSite(Protocol):
    """What the site planner (agent/control/planner.py) reads and sets on a site."""

    @property
    def drivers(self) -> Mapping[str, Driver]: ...

    @property
    def last_dt_s(self) -> float: ...

    def grid_limits(self) -> tuple[float, float] | None: ...

    def set_flywheel_plan(
        self,
        until_ts: float,
        shave_above_w: float | None,
        readiness_soc: float | None,
        charge_below_w: float | None = None,
    ) -> None: ...

    def set_demand_forecast(self, start_ts: float, end_ts: float, upper_w: float) -> None: ...

    def predict_spike(self, start_ts: float, end_ts: float, extra_w: float) -> None: ...
