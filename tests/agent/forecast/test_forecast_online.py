"""The running agent's forecaster: 5 and 15 min with intervals, bad input, auto per horizon."""

import logging
import math

import numpy as np

from agent.forecast import make_forecaster
from agent.forecast.online import SiteForecaster
from gridswarm.clock import ManualClock

T0 = 1_750_000_000.0 - (1_750_000_000.0 % 86400)


def daily(t: float) -> float:
    h = (t % 86400) / 3600
    return 5_000.0 + 3_000.0 * math.exp(-((h - 14.0) ** 2) / 8.0)


def feed(f: SiteForecaster, clock: ManualClock, seconds: float, tick: float = 30.0, value=daily) -> None:
    end = clock.now() + seconds
    while clock.now() < end:
        clock.advance(tick)
        f.observe(clock.now(), value(clock.now()), 0.0)


def test_forecasts_5_and_15_minutes_with_intervals_from_its_own_history():
    clock = ManualClock(T0)
    f = SiteForecaster(clock, has_pv=True)
    feed(f, clock, 2 * 86400 + 13 * 3600)
    out = f.refresh()
    assert out is not None and set(out.demand) == {300.0, 900.0} and out.pv is not None
    for o in out.demand.values():
        assert o.lower80_w <= o.point_w <= o.upper80_w
        assert abs(o.point_w - daily(out.start_ts + o.horizon_s / 2)) < 300.0
    assert out.demand[900.0].model.startswith("auto:")


def test_missing_history_gives_no_outlook_and_says_so_once(caplog):
    clock = ManualClock(T0)
    f = SiteForecaster(clock)
    with caplog.at_level(logging.WARNING):
        assert f.refresh() is None
        feed(f, clock, 300)
        assert f.refresh() is None
    assert caplog.text.count("missing history") == 1
    assert f.fallback.startswith("missing history")


def test_bad_readings_are_dropped_logged_once_and_forecasting_goes_on(caplog):
    clock = ManualClock(T0)
    f = SiteForecaster(clock, max_w=1e6)
    feed(f, clock, 3600)
    bad = iter([math.nan, 1.0, -50.0, 1.0, 1e12, 1.0, math.inf, 1.0] * 15)
    with caplog.at_level(logging.WARNING):
        feed(f, clock, 3600, value=lambda t: next(bad, daily(t)))
        f.observe(clock.now() - 100, 5_000.0)  # clock went back
        f.observe(clock.now() - 90, 5_000.0)
    assert caplog.text.count("non-finite") == 1 and caplog.text.count("outside [0") == 1
    assert caplog.text.count("clock went back") == 1
    feed(f, clock, 1800)
    out = f.refresh()
    assert out is not None and all(math.isfinite(o.point_w) and o.point_w >= 0 for o in out.demand.values())


def test_clock_jump_forward_restarts_history_without_stopping():
    clock = ManualClock(T0)
    f = SiteForecaster(clock)
    feed(f, clock, 7200)
    assert f.refresh() is not None
    clock.advance(30 * 86400)  # far beyond a week: the history restarts
    feed(f, clock, 1800)
    out = f.refresh()
    assert out is not None and out.start_ts > T0 + 30 * 86400


def test_nan_forecast_falls_back_to_no_outlook(caplog):
    clock = ManualClock(T0)
    f = SiteForecaster(clock)
    feed(f, clock, 3600)
    assert f.refresh() is not None
    f.demand.forecaster.predict = lambda h: (_ for _ in ()).throw(FloatingPointError("nan"))
    with caplog.at_level(logging.ERROR):
        assert f.refresh() is None and f.refresh() is None
    assert caplog.text.count("site forecast failed") == 1


def test_auto_chooses_by_the_horizon_asked():
    # a daily pattern with a slowly wandering level: persistence wins 1 step ahead,
    # the daily pattern wins half a day ahead
    rng = np.random.default_rng(5)
    n = 96 * 14
    t = np.arange(n)
    y = 1000 + 400 * np.sin(2 * np.pi * t / 96) + np.cumsum(rng.normal(0, 10, n)) + rng.normal(0, 2, n)
    f = make_forecaster("auto", step_s=900, background=False, seasonal_periods=[96],
                        candidates=["persistence", "seasonal_naive_daily"], calib_horizon=48)
    f.fit(y, 0.0)
    assert f.choice_for(1) == "persistence"
    assert f.choice_for(48) == "seasonal_naive_daily"
    assert f.predict(48).model == "auto:seasonal_naive_daily"
    assert f.predict(1).model == "auto:persistence"
