"""The shared driver conformance suite against three SunSpec maps laid out independently of the
project's simulator (pysunspec2's encoder; other model orders, base addresses 40000/0/50000,
common model with and without Pad, other scale factors, optional points absent; see
``field_device.py``). Figures a map lacks come from the config, as a site would supply them."""

import contextlib

from conformance import T0, DriverConformance, Rig
from field_device import LAYOUTS, FieldDevice

from agent.drivers.base import DeviceKind
from agent.drivers.sunspec import SunSpecDriver
from gridswarm.clock import ManualClock


class _FieldConformance(DriverConformance):
    layout_name = ""
    config: dict = {}

    @contextlib.asynccontextmanager
    async def make(self, kind, *, writable=True):
        layout = LAYOUTS[self.layout_name]
        clock = ManualClock(T0)
        device = FieldDevice(clock, layout, kind=kind)
        device.timeout_delay_s = 1.5  # well past the driver timeout below
        await device.start()
        driver = SunSpecDriver(f"field-{kind}", DeviceKind(kind), clock, host="127.0.0.1", port=device.port,
                               timeout_s=0.5, writable=writable, **self.config.get(kind, {}))

        async def fault(name):
            device.fault = name

        try:
            yield Rig(driver, clock, fault, device.stop, resolution_w=max(10.0, 10.0 ** layout.sf["W_SF"]))
        finally:
            await driver.close()
            await device.stop()


class TestDer124Conformance(_FieldConformance):
    layout_name = "der-124"  # 1, 124, 704, 701: no capacity and no PV rating on the device
    config = {"battery": {"capacity_wh": 10_000.0}, "pv": {"rated_w": 5_000.0}}


class TestDer713Conformance(_FieldConformance):
    layout_name = "der-713"  # 1, 704, 713, 702, 701 at base 0


class TestLegacy103Conformance(_FieldConformance):
    layout_name = "legacy-103"  # 1, 121, 103, 124, 120, 123 at base 50000
