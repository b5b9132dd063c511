"""What the agent runtime and its parts (trader, planner, fleet link, remote config, fast path)
may ask of a site: a typed protocol, so none of them probes the site with ``getattr``.

:class:`agent.site.Site` implements it; a test may hand the runtime any object that does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agent.control.arbiter import ControlConfig
    from agent.drivers.base import Driver
    from agent.site import SiteState

__all__ = ["SitePort"]


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
