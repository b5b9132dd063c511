"""One conformance suite every driver passes (web3.py ``module_testing`` style).

Subclass :class:`DriverConformance` per backend and implement :meth:`make`, an async context
manager yielding a :class:`Rig`: the driver under test plus the handles the suite needs to move
time and to break the device the way real devices break. Each test runs its own event loop
(``asyncio.run``) and the rig is torn down (servers stopped) whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from agent.drivers.base import (
    BadRegisterValueError,
    DeviceUnavailableError,
    Driver,
    DriverError,
    DriverReadOnlyError,
    DriverTimeoutError,
    Setpoint,
    SetpointOutOfRangeError,
)
from gridswarm.clock import ManualClock

T0 = 1_750_000_000.0 + 2 * 3600  # 12:06 local at the default PV site: the sun is up


@dataclass
class Rig:
    driver: Driver
    clock: ManualClock
    fault: Callable[[str | None], Awaitable[None]]  # "timeout" | "bad_value" | None
    vanish: Callable[[], Awaitable[None]]  # the device goes away for good
    resolution_w: float  # smallest power step the device can represent


class DriverConformance:
    """Behaviour every driver shares. ``kinds`` lists the device kinds a backend supports."""

    kinds: tuple[str, ...] = ("battery", "pv")

    def make(self, kind: str, *, writable: bool = True) -> contextlib.AbstractAsyncContextManager[Rig]:
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------------------

    def run(self, kind: str, body: Callable[[Rig], Awaitable[None]], *, writable: bool = True) -> None:
        if kind not in self.kinds:
            pytest.skip(f"{type(self).__name__} does not drive {kind}")

        async def main() -> None:
            async with self.make(kind, writable=writable) as rig:
                await rig.driver.connect()
                try:
                    await body(rig)
                finally:
                    with contextlib.suppress(DriverError):
                        await rig.driver.close()

        asyncio.run(main())

    # -- reading -------------------------------------------------------------------------

    @pytest.mark.parametrize("kind", ["battery", "pv"])
    def test_read_returns_this_devices_telemetry(self, kind):
        async def body(rig: Rig) -> None:
            tel = await rig.driver.read()
            assert tel.device_id == rig.driver.device_id
            assert tel.kind == kind
            assert tel.ts == rig.clock.now()
            assert math.isfinite(tel.power_w)
            lim = rig.driver.limits
            assert lim.min_w <= 0.0 <= lim.max_w and lim.max_w > 0
            if kind == "battery":
                assert tel.soc is not None and 0.0 <= tel.soc <= 1.0
                assert tel.capacity_wh and tel.capacity_wh > 0
                assert tel.available_charge_w >= 0 and tel.available_discharge_w >= 0
            else:
                assert tel.power_w >= 0.0  # generation delivers to the bus

        self.run(kind, body)

    # -- writing -------------------------------------------------------------------------

    def test_battery_setpoint_is_applied_with_the_bus_sign(self):
        async def body(rig: Rig) -> None:
            d = rig.driver
            soc0 = (await d.read()).soc
            applied = await d.apply(Setpoint(2_000.0, "test", "discharge"))
            assert applied == pytest.approx(2_000.0, abs=rig.resolution_w)
            rig.clock.advance(600)
            tel = await d.read()
            assert tel.power_w == pytest.approx(applied, abs=rig.resolution_w)
            assert tel.soc < soc0  # + = delivering: the store empties
            applied = await d.apply(Setpoint(-1_500.0, "test", "charge"))
            assert applied == pytest.approx(-1_500.0, abs=rig.resolution_w)
            soc1 = tel.soc
            rig.clock.advance(600)
            tel = await d.read()
            assert tel.power_w == pytest.approx(applied, abs=rig.resolution_w)
            assert tel.soc > soc1

        self.run("battery", body)

    def test_pv_curtailment_caps_the_output(self):
        async def body(rig: Rig) -> None:
            d = rig.driver
            before = (await d.read()).power_w
            assert before > 500.0
            applied = await d.apply(Setpoint(500.0, "test", "curtail"))
            assert applied == pytest.approx(500.0, abs=rig.resolution_w)
            rig.clock.advance(60)
            assert (await d.read()).power_w <= 500.0 + rig.resolution_w

        self.run("pv", body)

    @pytest.mark.parametrize("kind", ["battery", "pv"])
    def test_out_of_range_setpoint_changes_nothing(self, kind):
        async def body(rig: Rig) -> None:
            d = rig.driver
            ok = 1_000.0 if kind == "battery" else 800.0
            await d.apply(Setpoint(ok))
            before = await d.read()
            for bad in (d.limits.max_w * 2 + 1, d.limits.min_w * 2 - 1 if kind == "battery" else -10.0):
                with pytest.raises(SetpointOutOfRangeError):
                    await d.apply(Setpoint(bad))
            with pytest.raises(SetpointOutOfRangeError):
                Setpoint(float("nan"))
            after = await d.read()
            assert after.power_w == pytest.approx(before.power_w, abs=rig.resolution_w)
            assert after.setpoint_w == pytest.approx(before.setpoint_w)

        self.run(kind, body)

    @pytest.mark.parametrize("kind", ["battery", "pv"])
    def test_read_only_driver_never_writes(self, kind):
        async def body(rig: Rig) -> None:
            d = rig.driver
            before = await d.read()
            with pytest.raises(DriverReadOnlyError):
                await d.apply(Setpoint(1_000.0 if kind == "battery" else 100.0))
            after = await d.read()
            assert after.power_w == pytest.approx(before.power_w, abs=rig.resolution_w)

        self.run(kind, body, writable=False)

    @pytest.mark.parametrize("kind", ["battery", "pv"])
    def test_revert_returns_to_the_safe_default(self, kind):
        async def body(rig: Rig) -> None:
            d = rig.driver
            await d.apply(Setpoint(-2_000.0 if kind == "battery" else 300.0))
            value = await d.revert()
            rig.clock.advance(10)
            tel = await d.read()
            if kind == "battery":
                assert value == 0.0 and tel.power_w == pytest.approx(0.0, abs=rig.resolution_w)
            else:
                assert value == d.limits.max_w and tel.power_w > 300.0 + rig.resolution_w

        self.run(kind, body)

    # -- failures ------------------------------------------------------------------------

    def test_timeout_is_mapped_logged_once_and_recovers(self, caplog):
        caplog.set_level(logging.INFO, logger="agent.drivers.base")

        async def body(rig: Rig) -> None:
            await rig.fault("timeout")
            for _ in range(2):
                with pytest.raises(DriverTimeoutError) as err:
                    await rig.driver.read()
                assert isinstance(err.value, TimeoutError)
            await rig.fault(None)
            await rig.driver.read()
            await rig.driver.read()

        self.run("battery", body)
        msgs = [r.getMessage() for r in caplog.records]
        assert sum("failing" in m for m in msgs) == 1
        assert sum("recovered" in m for m in msgs) == 1

    @pytest.mark.parametrize("kind", ["battery", "pv"])
    def test_bad_register_value_is_mapped(self, kind):
        async def body(rig: Rig) -> None:
            await rig.fault("bad_value")
            with pytest.raises(BadRegisterValueError) as err:
                await rig.driver.read()
            assert isinstance(err.value, ValueError)
            await rig.fault(None)
            await rig.driver.read()

        self.run(kind, body)

    def test_vanished_device_is_unavailable_and_probe_says_so(self):
        async def body(rig: Rig) -> None:
            await rig.vanish()
            with pytest.raises(DeviceUnavailableError) as err:
                await rig.driver.read()
            assert isinstance(err.value, ConnectionError)
            with pytest.raises(DeviceUnavailableError):
                await rig.driver.apply(Setpoint(0.0))
            probe = await rig.driver.probe()
            assert not probe.ok and "DeviceUnavailableError" in probe.error

        self.run("battery", body)

    @pytest.mark.parametrize("kind", ["battery", "pv"])
    def test_probe_describes_the_device(self, kind):
        async def body(rig: Rig) -> None:
            probe = await rig.driver.probe()
            assert probe.ok and probe.telemetry is not None
            assert probe.device_id == rig.driver.device_id and probe.kind == kind
            assert probe.detail

        self.run(kind, body)
