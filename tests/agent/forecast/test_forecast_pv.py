"""PV forecaster (pvlib): clear-sky physics, clear-sky-index forecast, weather path, bad input."""

import logging

import numpy as np
import pytest

pytest.importorskip("pvlib")

from agent.forecast import ForecastInputError, PVForecaster  # noqa: E402
from agent.forecast.pv import PVModel  # noqa: E402
from gridswarm.clock import ManualClock  # noqa: E402

LAT, LON = 52.5, 13.4  # Berlin
DAY0 = 1465430400.0  # 9 Jun 2016 00:00 UTC
STEP = 900.0
CAP = 5000.0


def day_ts(days: int = 1) -> np.ndarray:
    return DAY0 + STEP * np.arange(days * 96)


def test_clear_sky_power_is_zero_at_night_and_peaks_near_solar_noon():
    m = PVModel(LAT, LON, CAP)
    p = m.clearsky_power(day_ts(), STEP)
    assert p[:8].max() == 0.0 and p[-4:].max() == 0.0  # 00:00-02:00 and 23:00 UTC
    peak_hour = np.argmax(p) * STEP / 3600
    assert 10.0 < peak_hour < 12.5  # solar noon in Berlin is about 11:05 UTC
    assert 0.6 * m.ac_w < p.max() <= m.ac_w


def test_weather_forecast_path_follows_irradiance():
    f = PVForecaster(LAT, LON, capacity_w=CAP, step_s=STEP)
    clear = f.model.clearsky_power(day_ts(2), STEP)
    f.fit(clear[:96] * 0.7, DAY0)
    ghi = np.full(96, 800.0)
    ghi[:20] = 0.0
    fc = f.predict(96, weather={"ghi": ghi, "temp_air": np.full(96, 25.0)})
    assert fc.model == "pv_weather"
    assert np.all(fc.point[:20] == 0.0)
    dark = f.predict(96, weather={"ghi": np.zeros(96)})
    assert np.all(dark.point == 0.0)


def test_clear_sky_index_persistence_tracks_a_cloudy_site():
    f = PVForecaster(LAT, LON, capacity_w=CAP, step_s=STEP)
    clear = f.model.clearsky_power(day_ts(4), STEP)
    rng = np.random.default_rng(0)
    y = clear * np.clip(0.6 + rng.normal(0, 0.02, len(clear)), 0, 1)
    f.fit(y[:3 * 96 + 40], DAY0)  # up to 10:00 on day 4
    fc = f.predict(8)
    want = 0.6 * clear[3 * 96 + 40:3 * 96 + 48]
    np.testing.assert_allclose(fc.point, want, rtol=0.08)
    assert np.all(fc.lower95 <= fc.point) and np.all(fc.point <= fc.upper95)


def test_intervals_are_zero_width_at_night():
    f = PVForecaster(LAT, LON, capacity_w=CAP, step_s=STEP)
    clear = f.model.clearsky_power(day_ts(3), STEP)
    f.fit(clear[:2 * 96] * 0.5, DAY0)
    fc = f.predict(96)  # the third day, from midnight
    night = f.model.clearsky_power(fc.timestamps(), STEP) == 0
    assert night.any()
    assert np.all(fc.upper95[night] == 0) and np.all(fc.point[night] == 0)


def test_bad_readings_are_ignored_and_logged(caplog):
    f = PVForecaster(LAT, LON, capacity_w=CAP, step_s=STEP)
    clear = f.model.clearsky_power(day_ts(2), STEP)
    y = clear * 0.5
    y[50], y[51], y[52] = -10.0, np.nan, 10 * CAP
    with caplog.at_level(logging.WARNING):
        f.fit(y[:96], DAY0)
    assert "ignored" in caplog.text
    f.update(y[96:100])
    f.update([1.0], ts=f.last_ts + 5 * STEP)  # gap
    fc = f.predict(12)
    assert np.all(np.isfinite(fc.point))


def test_bad_weather_input_falls_back_to_clear_sky_index(caplog):
    f = PVForecaster(LAT, LON, capacity_w=CAP, step_s=STEP)
    f.fit(f.model.clearsky_power(day_ts(), STEP) * 0.5, DAY0)
    with caplog.at_level(logging.WARNING):
        fc = f.predict(96, weather={"ghi": [1.0, 2.0]})  # too short
    assert fc.fallback.startswith("bad weather input") and fc.model == "pv_clearsky_index"
    fc = f.predict(4, weather={"temp_air": [20] * 4})  # no irradiance at all
    assert fc.fallback is not None


def test_stale_pv_data_forecasts_from_now():
    clock = ManualClock(DAY0 + 96 * STEP)
    f = PVForecaster(LAT, LON, capacity_w=CAP, step_s=STEP, clock=clock)
    f.fit(f.model.clearsky_power(day_ts(), STEP) * 0.5, DAY0)
    clock.advance(10 * STEP)
    fc = f.predict(4)
    assert fc.start_ts == DAY0 + 106 * STEP and "stale" in fc.fallback


def test_bad_site_is_a_clear_error():
    with pytest.raises(ForecastInputError):
        PVForecaster(95.0, 0.0, capacity_w=CAP)
    with pytest.raises(ForecastInputError):
        PVForecaster(LAT, LON, capacity_w=0)
