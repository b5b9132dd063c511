"""The SunSpec driver against devices laid out as in the field (maps built with pysunspec2's own
encoder, in several model orders, base addresses and scale factors, optional points present and
absent; see ``field_device.py``), served by pymodbus on 127.0.0.1."""

import asyncio
import dataclasses

import pytest
from field_device import LAYOUTS, Layout, meter_layout, serve

from agent.devices.spec import DeviceConfigError, validate_devices
from agent.drivers.base import (
    BadRegisterValueError,
    DeviceKind,
    DeviceNotSupportedError,
    DriverTimeoutError,
    Setpoint,
)
from agent.drivers.sunspec import SunSpecDriver
from gridswarm.clock import ManualClock

T0 = 1_750_000_000.0


def driver(dev, clock, kind=DeviceKind.BATTERY, **kw):
    kw.setdefault("timeout_s", 0.5)
    return SunSpecDriver("d", kind, clock, host="127.0.0.1", port=dev.port, **kw)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@pytest.mark.parametrize("common_len", [65, 66])
def test_discovery_and_exact_scaled_values(name, common_len):
    layout = dataclasses.replace(LAYOUTS[name], common_len=common_len)

    async def main():
        clock = ManualClock(T0)
        async with serve(clock, layout, soc=0.37) as dev:
            d = driver(dev, clock, capacity_wh=8_000.0)
            await d.connect()
            assert d.base == layout.base
            assert d.lengths[1] == common_len
            assert d.discovered_models() == layout.models
            assert d.common["SN"] == "FIELD-0001" and d.common["Mn"] == "Acme"
            tel = await d.read()
            soc_point = (713, "SoC") if 713 in layout.models else (124, "ChaState")
            assert tel.soc * 100 == pytest.approx(dev.read_point(*soc_point))
            inv = 701 if 701 in layout.models else 103
            assert tel.frequency_hz == pytest.approx(dev.read_point(inv, "Hz"))
            assert tel.frequency_hz == pytest.approx(49.987, abs=10 ** layout.sf["Hz_SF"])
            ln, ll = ("LNV", "LLV") if inv == 701 else ("PhVphA", "PPVphAB")
            expect = dev.voltage[ll] if ln in layout.omit else dev.voltage[ln]
            assert tel.voltage_v == pytest.approx(expect, abs=10 ** layout.sf["V_SF"])
            assert tel.capacity_wh == (8_000.0 if 713 not in layout.models and 120 not in layout.models
                                       else pytest.approx(10_000.0))
            await d.close()

    asyncio.run(main())


def test_a_model_too_short_for_its_points_is_refused():
    layout = dataclasses.replace(LAYOUTS["der-124"], common_len=60)

    async def main():
        clock = ManualClock(T0)
        async with serve(clock, layout) as dev:
            with pytest.raises(BadRegisterValueError, match="model 1 length 60 < 65"):
                await driver(dev, clock).connect()

    asyncio.run(main())


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_exact_writes_read_back(name):
    layout = LAYOUTS[name]

    async def main():
        clock = ManualClock(T0)
        async with serve(clock, layout) as dev:
            d = driver(dev, clock, writable=True, capacity_wh=10_000.0)
            await d.connect()
            assert await d.apply(Setpoint(-2_340.0)) == pytest.approx(-2_340.0, abs=10 ** layout.sf.get("WSet_SF", 1))
            if 704 in layout.models:
                assert dev.read_point(704, "WSetEna") == 1
                assert dev.read_point(704, "WSet") == pytest.approx(-2_340.0, abs=10 ** layout.sf["WSet_SF"])
            else:
                assert dev.read_point(124, "StorCtl_Mod") == 1
                assert dev.read_point(124, "InWRte") == pytest.approx(46.8)
            clock.advance(60)
            assert (await d.read()).power_w == pytest.approx(-2_340.0, abs=10 ** max(layout.sf["W_SF"], 1))
            await d.close()

    asyncio.run(main())


def test_missing_wset_scale_factor_is_not_implemented():
    layout = dataclasses.replace(LAYOUTS["der-124"], omit=frozenset({"WSet_SF"}))

    async def main():
        clock = ManualClock(T0)
        async with serve(clock, layout) as dev:
            d = driver(dev, clock, writable=True, capacity_wh=10_000.0)
            await d.connect()
            with pytest.raises(BadRegisterValueError, match="model 704 WSet_SF not implemented"):
                await d.apply(Setpoint(1_000.0))
            assert dev.writes == []
            await d.close()

    asyncio.run(main())


def test_a_silent_device_says_where_and_how_long():
    async def main():
        clock = ManualClock(T0)
        async with serve(clock, LAYOUTS["der-713"], unit_id=3) as dev:
            d = driver(dev, clock, unit_id=3, timeout_s=0.3)
            await d.connect()
            dev.fault = "timeout"
            with pytest.raises(DriverTimeoutError) as err:
                await d.read()
            msg = str(err.value)
            assert f"no response from 127.0.0.1:{dev.port} unit 3 after 0.3 s" in msg
            assert "retries" not in msg and "continue with next request" not in msg
            await d.close()

    asyncio.run(main())


@pytest.mark.parametrize("model", [201, 202, 203, 204])
def test_meter_reads_import_export_voltage_frequency(model):
    async def main():
        clock = ManualClock(T0)
        async with serve(clock, meter_layout(model), kind="grid") as dev:
            dev.meter.update(W=-2_310.0, Hz=50.07, PhV=229.8, TotWhImp=1_000_230.0, TotWhExp=45_670.0)
            d = driver(dev, clock, DeviceKind.GRID, import_limit_w=20_000.0, export_limit_w=10_000.0)
            await d.connect()
            assert d.meter_model == model
            tel = await d.read()
            assert tel.kind == "grid"
            assert tel.power_w == pytest.approx(-2_310.0)  # exporting
            assert tel.frequency_hz == pytest.approx(50.07)
            assert tel.voltage_v == pytest.approx(229.8)
            assert tel.energy_out_wh == pytest.approx(1_000_230.0)  # imported: delivered to the bus
            assert tel.energy_in_wh == pytest.approx(45_670.0)  # exported: taken from the bus
            assert tel.detail["import_limit_w"] == 20_000.0
            report = d.control_report()
            assert not report.controlled and report.cannot
            await d.close()

    asyncio.run(main())


def test_a_meter_is_never_writable():
    with pytest.raises(DeviceConfigError, match=r"devices\[0\].writable"):
        validate_devices([{"type": "grid", "driver": "sunspec", "host": "h", "writable": True}])
    with pytest.raises(ValueError, match="read-only"):
        SunSpecDriver("g", DeviceKind.GRID, ManualClock(T0), host="h", writable=True)


def test_an_inverter_is_not_a_meter():
    async def main():
        clock = ManualClock(T0)
        async with serve(clock, LAYOUTS["der-124"]) as dev:
            with pytest.raises(DeviceNotSupportedError, match="no meter model"):
                await driver(dev, clock, DeviceKind.GRID).connect()

    asyncio.run(main())


def test_a_battery_without_capacity_says_what_is_missing():
    async def main():
        clock = ManualClock(T0)
        async with serve(clock, LAYOUTS["der-124"]) as dev:
            d = driver(dev, clock, writable=True)
            await d.connect()
            report = d.control_report()
            assert not report.controlled
            assert "capacity_wh" in report.missing and "dispatch" in report.missing["capacity_wh"]
            assert any("blocked by missing capacity_wh" in c for c in report.cannot)
            await d.close()

    asyncio.run(main())


def test_config_can_lower_but_never_raise_a_power_rating():
    async def main():
        clock = ManualClock(T0)
        async with serve(clock, LAYOUTS["der-713"]) as dev:
            d = driver(dev, clock, writable=True, max_charge_w=3_000.0, max_discharge_w=9_000.0)
            await d.connect()
            assert d.limits.min_w == -3_000.0 and d.limits.max_w == 5_000.0
            await d.close()

    asyncio.run(main())


def test_config_supplies_a_rating_the_device_lacks():
    layout = Layout((1, 713, 704, 701), sf={"W_SF": 0, "WSet_SF": 0, "Pct_SF": 0, "WH_SF": 0})

    async def main():
        clock = ManualClock(T0)
        async with serve(clock, layout) as dev:
            with pytest.raises(BadRegisterValueError, match="set rated_w in the config"):
                await driver(dev, clock).connect()
            d = driver(dev, clock, rated_w=4_000.0)
            await d.connect()
            assert d.limits.max_w == 4_000.0 and d.figure_source["rated_w"] == "config"
            await d.close()

    asyncio.run(main())


def test_a_meter_that_measures_no_voltage_reports_an_outage():
    async def main():
        clock = ManualClock(T0)
        async with serve(clock, meter_layout(203), kind="grid") as dev:
            d = driver(dev, clock, DeviceKind.GRID)
            await d.connect()
            assert (await d.read()).status == "ok"
            dev.meter.update(PhV=0.0, Hz=0.0, W=0.0)
            tel = await d.read()
            assert tel.status == "outage" and tel.voltage_v == 0.0 and tel.frequency_hz is None
            await d.close()

    asyncio.run(main())


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_field_maps_read_the_same_through_pysunspec2s_own_client(name):
    """The field maps are valid SunSpec as pysunspec2's Modbus client sees them, and it reads the
    same values our driver does."""
    import sunspec2.modbus.client as ss_client

    layout = LAYOUTS[name]

    def theirs(port):
        d = ss_client.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=2)
        try:
            d.scan()
            inv = 701 if 701 in d.models else 103
            m = d.models[inv][0]
            m.read()
            return sorted(k for k in d.models if isinstance(k, int)), m.W.cvalue, m.Hz.cvalue
        finally:
            d.close()

    async def main():
        clock = ManualClock(T0)
        async with serve(clock, layout) as dev:
            d = driver(dev, clock, writable=True, capacity_wh=10_000.0)
            await d.connect()
            await d.apply(Setpoint(1_800.0))
            tel = await d.read()
            found, w, hz = await asyncio.to_thread(theirs, dev.port)
            assert found == sorted(layout.models)
            assert tel.power_w == pytest.approx(w) == pytest.approx(1_800.0, abs=100)
            assert tel.frequency_hz == pytest.approx(hz)
            await d.close()

    asyncio.run(main())
