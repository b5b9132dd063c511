"""A site dispatches a SunSpec battery that exposes only 1/124/704/701 once the config supplies its
capacity, and says at start which devices it will not control and why."""

import asyncio
import logging

import pytest
from field_device import LAYOUTS, meter_layout, serve

from agent.site import Site
from gridswarm.clock import ManualClock

T0 = 1_750_000_000.0


def _site(clock, devices):
    return Site.from_config(devices, clock, seed=1, reserve_soc=0.2, idle_mode="idle")


def _battery(port, **extra):
    return {"id": "hybrid", "type": "battery", "driver": "sunspec", "host": "127.0.0.1", "port": port,
            "writable": True, "timeout_s": 0.5, **extra}


@pytest.mark.parametrize("command", ["market", "virtual_battery"])
def test_a_battery_without_capacity_registers_is_dispatched_with_config_capacity(command, caplog):
    caplog.set_level(logging.INFO, logger="agent.control_log")

    async def main():
        clock = ManualClock(T0)
        async with serve(clock, LAYOUTS["der-124"], soc=0.6) as dev:
            site = _site(clock, [_battery(dev.port, capacity_wh=10_000.0)])
            await site.connect()
            if command == "market":
                site.set_market_schedule(T0, T0 + 900, 2_000.0, reason="test trade")
            else:
                site.set_virtual_battery(T0, T0 + 900, -1_500.0, reason="test vb")
            state = await site.tick()
            assert state.errors == {}
            assert dev.writes, "the schedule produced no write"
            want = 2_000.0 if command == "market" else -1_500.0
            assert state.applied["hybrid"] == pytest.approx(want, abs=10.0)
            assert dev.read_point(704, "WSetEna") == 1
            assert dev.read_point(704, "WSet") == pytest.approx(want, abs=10.0)
            await site.close()
            assert dev.read_point(704, "WSetEna") == 0  # the running agent reverts on the way out

    asyncio.run(main())
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("device hybrid controlled" in m for m in msgs) == 1


def test_site_logs_once_at_start_every_device_it_will_not_control(caplog):
    caplog.set_level(logging.INFO, logger="agent.control_log")

    async def main():
        clock = ManualClock(T0)
        async with serve(clock, LAYOUTS["der-124"], soc=0.6) as bat, \
                serve(clock, LAYOUTS["legacy-103"], kind="pv") as pv, \
                serve(clock, meter_layout(203), kind="grid") as meter:
            site = _site(clock, [
                _battery(bat.port),  # writable, but no capacity anywhere
                {"id": "roof", "type": "pv", "driver": "sunspec", "host": "127.0.0.1", "port": pv.port},
                {"id": "poc", "type": "grid", "driver": "sunspec", "host": "127.0.0.1", "port": meter.port},
                {"id": "gone", "type": "battery", "driver": "sunspec", "host": "127.0.0.1", "port": 9,
                 "writable": True, "timeout_s": 0.2},
            ])
            await site.connect()
            site.set_virtual_battery(T0, T0 + 900, 1_000.0)
            for _ in range(3):
                await site.tick()
                clock.advance(10)
            assert bat.writes == []  # it cannot be dispatched without a capacity...
            assert set(site.control_log.uncontrolled) == {"hybrid", "roof", "poc", "gone"}
            await site.close()

    asyncio.run(main())
    recs = [(r.levelno, r.getMessage()) for r in caplog.records if "will not be controlled" in r.getMessage()]
    by_dev = {m.split()[1]: (lvl, m) for lvl, m in recs}
    assert len(recs) == 4 == len(by_dev)  # ...and says so, once
    assert by_dev["hybrid"][0] == logging.WARNING and "capacity_wh" in by_dev["hybrid"][1]
    assert by_dev["roof"][0] == logging.INFO and "read-only" in by_dev["roof"][1]
    assert "meter" in by_dev["poc"][1]
    assert by_dev["gone"][0] == logging.WARNING and "until it answers" in by_dev["gone"][1]


def test_a_sunspec_meter_meters_the_site_and_bounds_its_schedules():
    async def main():
        clock = ManualClock(T0)
        async with serve(clock, meter_layout(201), kind="grid") as meter:
            site = _site(clock, [{"id": "poc", "type": "grid", "driver": "sunspec", "host": "127.0.0.1",
                                  "port": meter.port, "import_limit_w": 9_000.0, "export_limit_w": 4_000.0}])
            await site.connect()
            state = await site.tick()
            assert state.devices["poc"].frequency_hz == pytest.approx(50.02)
            assert state.devices["poc"].voltage_v == pytest.approx(231.4)
            meter.meter["TotWhImp"] += 120.0
            meter.meter["TotWhExp"] += 30.0
            clock.advance(60)
            await site.tick()
            exported, imported = site.meter_window(T0, T0 + 60)
            assert (exported, imported) == (pytest.approx(30.0), pytest.approx(120.0))
            with pytest.raises(ValueError, match="grid connection"):
                site.set_market_schedule(T0, T0 + 900, 5_000.0)  # beyond the metered export limit
            await site.close()

    asyncio.run(main())
