from __future__ import annotations

import asyncio

from agent.config import TradingConfig
from agent.site import Site
from agent.trader import Trader
from gridswarm.clock import ManualClock

SELLER = [
    {"type": "pv", "peak_w": 8000.0},
    {"type": "battery", "capacity_wh": 13500.0, "max_charge_w": 5000.0, "max_discharge_w": 5000.0, "initial_soc": 0.8},
    {"type": "load", "profile": "household", "peak_w": 2000.0},
    {"type": "grid"},
]
BUYER = [{"type": "load", "profile": "commercial", "peak_w": 6000.0}, {"type": "grid"}]

NOON_ISH = 1_782_054_000.0  # 10:00 local at the PV profile's site on 21 June


def _run(devices: list[dict], role: str, seconds: float) -> tuple[Trader, ManualClock]:
    clock = ManualClock(NOON_ISH)
    site = Site.from_config(devices, clock, seed=3, reserve_soc=0.3)
    trader = Trader(TradingConfig(role=role, price_jitter=0), site, clock, seed="t", step_s=300.0)

    async def main() -> None:
        await site.connect()
        for _ in range(int(seconds // 30)):
            clock.advance(30)
            await site.tick()
            trader.observe(clock.now())

    asyncio.run(main())
    trader.forecaster.wait_refit(timeout=30)
    return trader, clock


def test_device_models_stand_in_until_history_exists() -> None:
    trader, clock = _run(SELLER, "seller", 300)
    start = clock.now() + 900
    assert trader.forecast_net_wh(start, start + 900) is None
    d = trader.decide(1, "0xabc", start, start + 900)
    assert d.basis == "device models"
    assert d.side == "offer" and d.qty_wh > 0


def test_seller_offers_from_forecast_and_never_above_what_the_site_can_deliver() -> None:
    trader, clock = _run(SELLER, "seller", 3 * 3600)
    start = clock.now() + 900
    fc = trader.forecast_net_wh(start, start + 900)
    assert fc is not None
    point, lower = fc
    assert lower <= point
    d = trader.decide(2, "0xabc", start, start + 900)
    assert d.basis.startswith("forecast (")
    assert d.side == "offer"
    assert 0 < d.qty_wh <= trader.site.available_export_wh(start, start + 900) + 1


def test_buyer_bids_for_its_forecast_deficit() -> None:
    trader, clock = _run(BUYER, "buyer", 3 * 3600)
    start = clock.now() + 900
    point, _ = trader.forecast_net_wh(start, start + 900)
    assert point < 0
    d = trader.decide(3, "0xabc", start, start + 900)
    assert d.side == "bid"
    assert d.qty_wh == int(-point)
    assert d.price == TradingConfig().bid_price


def _site_at(devices: list[dict], seconds: float = 60.0) -> tuple[Trader, ManualClock]:
    clock = ManualClock(NOON_ISH)
    site = Site.from_config(devices, clock, seed=3, reserve_soc=0.2, low_threshold=0.3, high_threshold=0.8)
    trader = Trader(TradingConfig(price_jitter=0), site, clock, seed="t", step_s=300.0)

    async def main() -> None:
        await site.connect()
        for _ in range(int(seconds // 30)):
            clock.advance(30)
            await site.tick()

    asyncio.run(main())
    return trader, clock


def test_device_loop_request_makes_a_short_site_buy_and_never_offer() -> None:
    # PV surplus at 10:00, but the store is below its low threshold: it buys, it does not sell
    low = [SELLER[0], {**SELLER[1], "initial_soc": 0.22}, SELLER[2], SELLER[3]]
    trader, clock = _site_at(low)
    assert trader.site.last_state.intent.kind == "request"
    start = clock.now() + 900
    d = trader.decide(5, "0xabc", start, start + 900)
    assert d.side == "bid" and "device loop" in d.basis
    wanted = trader.site.last_state.intent.energy_wh
    assert d.qty_wh >= min(wanted, 5000.0 * 0.25) - 1  # at least what the store asks (within its charge power)


def test_device_loop_contribute_offers_surplus_within_the_owners_reserve() -> None:
    full = [{**SELLER[1], "initial_soc": 0.95}, {"type": "load", "profile": "household", "peak_w": 300.0},
            {"type": "grid"}]
    trader, clock = _site_at(full)
    intent = trader.site.last_state.intent
    assert intent.kind == "contribute"
    start = clock.now() + 900
    d = trader.decide(6, "0xabc", start, start + 900)
    assert d.side == "offer"
    assert d.qty_wh <= trader.site.available_export_wh(start, start + 900) + 1  # never below the reserve
    assert d.qty_wh >= min(intent.energy_wh, trader.site.available_export_wh(start, start + 900)) - 1
