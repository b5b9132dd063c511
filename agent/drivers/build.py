"""The drivers of a site from its validated ``devices:`` list.

Sim devices share one :class:`agent.drivers.sim.SimBus`; other drivers come from
``driver_factory`` (default: :func:`agent.drivers.sunspec.build_sunspec_driver`). The site gets
a list of :class:`agent.drivers.base.Driver` and never learns which kind it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agent.devices.pv import PROFILES as PV_PROFILES
from agent.devices.spec import AnyDevice, PVConfig
from agent.drivers.base import Driver
from agent.drivers.sim import SimBus, build_sim_driver
from gridswarm.clock import Clock

__all__ = ["build_drivers", "site_utc_offset_h"]


def site_utc_offset_h(devices: Sequence[AnyDevice]) -> float:
    """The site's local standard time (h): its first sim PV array's (given, or its profile's), else UTC."""
    pv = next((d for d in devices if isinstance(d, PVConfig)), None)
    if pv is None:
        return 0.0
    if pv.utc_offset_h is not None:
        return pv.utc_offset_h
    return float(PV_PROFILES[pv.profile]["utc_offset_h"])  # type: ignore[arg-type]


def build_drivers(devices: Sequence[AnyDevice], clock: Clock, *, seed: int, utc_offset_h: float | None = None,
                  driver_factory: Callable[[AnyDevice], Driver] | None = None) -> list[Driver]:
    """One driver per device, in the config's order."""
    if utc_offset_h is None:
        utc_offset_h = site_utc_offset_h(devices)
    bus = SimBus(clock)
    drivers: list[Driver] = []
    for i, spec in enumerate(devices):
        if spec.driver == "sim":
            drivers.append(build_sim_driver(spec, bus, seed=seed, index=i, utc_offset_h=utc_offset_h))
        elif driver_factory is not None:
            drivers.append(driver_factory(spec))
        else:
            from agent.drivers.sunspec import build_sunspec_driver

            drivers.append(build_sunspec_driver(spec, clock))
    return drivers
