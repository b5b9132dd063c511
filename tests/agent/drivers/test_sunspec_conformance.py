"""The SunSpec driver passes the shared conformance suite against a SunSpec device served by
pymodbus on 127.0.0.1 (register map from pysunspec2's model definitions), in two flavours:
inverter 103 + nameplate 120/121 + storage 124 + controls 123, and DER models 701/702/704."""

import contextlib

from conformance import T0, DriverConformance, Rig

from agent.drivers.base import DeviceKind
from agent.drivers.sunspec import SunSpecDriver
from agent.drivers.sunspec_sim import SunSpecSimDevice
from gridswarm.clock import ManualClock


class TestSunSpec103Conformance(DriverConformance):
    inverter_model = 103
    controls = (123,)

    @contextlib.asynccontextmanager
    async def make(self, kind, *, writable=True):
        clock = ManualClock(T0)
        device = SunSpecSimDevice(clock, kind=kind, inverter_model=self.inverter_model, controls=self.controls)
        device.timeout_delay_s = 1.5  # well past the driver timeout below
        port = await device.start()
        driver = SunSpecDriver(f"ss-{kind}", DeviceKind(kind), clock, host="127.0.0.1", port=port,
                               timeout_s=0.5, writable=writable)  # slack for a loaded CI machine

        async def fault(name):
            device.fault = name

        try:
            yield Rig(driver, clock, fault, device.stop, resolution_w=10.0)  # W_SF = 1
        finally:
            await driver.close()
            await device.stop()


class TestSunSpec701Conformance(TestSunSpec103Conformance):
    inverter_model = 701
    controls = (704,)
