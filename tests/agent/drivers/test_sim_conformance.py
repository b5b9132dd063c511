"""The sim driver passes the shared conformance suite."""

import contextlib

from conformance import T0, DriverConformance, Rig

from agent.devices.spec import validate_devices
from agent.drivers.sim import SimBus, build_sim_driver
from gridswarm.clock import ManualClock

SPECS = {
    "battery": {"type": "battery", "capacity_wh": 10_000, "max_charge_w": 5_000, "max_discharge_w": 5_000},
    "pv": {"type": "pv", "peak_w": 6_000},
}


class TestSimConformance(DriverConformance):
    @contextlib.asynccontextmanager
    async def make(self, kind, *, writable=True):
        clock = ManualClock(T0)
        spec = validate_devices([{**SPECS[kind], "writable": writable}])[0]
        driver = build_sim_driver(spec, SimBus(clock), seed=1, index=0, utc_offset_h=-5.0)

        async def fault(name):
            driver.inject_fault(name)

        async def vanish():
            driver.inject_fault("unavailable")

        yield Rig(driver, clock, fault, vanish, resolution_w=1e-6)
