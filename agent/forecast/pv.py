"""PV output forecasting with pvlib: from a weather forecast, or from the clear sky and the
site's recent clear-sky index when it has no weather forecast.

Physics (pvlib, PVWatts chain): solar position and Ineichen clear-sky irradiance for the site
(``Location.get_clearsky``), plane-of-array irradiance (``irradiance.get_total_irradiance``,
isotropic sky; GHI-only weather is split with ``irradiance.erbs``), cell temperature
(``temperature.faiman``), DC power (``pvsystem.pvwatts_dc``) less system losses, AC power
(``inverter.pvwatts``). Step ``i`` covers ``[ts_i, ts_i + step_s)`` and is evaluated at its
midpoint. Power in W (positive = generation, docs/architecture.md §6).

Forecast without weather ("smart persistence"): the clear-sky index ``k = P / P_clear`` of
recent daylight steps (mean over ``k_window_s``) decays towards the site's mean index of the
last ``climate_days`` days as the horizon grows, ``k(h) = k_clim + (k_now - k_clim) rho**h``,
with ``rho`` the lag-one autocorrelation of the daylight index; the forecast is
``k(h) * P_clear(t+h)``.

Intervals: split-conformal on the residual *normalised by clear-sky power*, per horizon, so the
band is zero at night and widest at noon on a variable day. With a weather forecast the same
residual quantiles are used (no history of weather forecasts to calibrate against: the band
then describes clear-sky-index uncertainty, a conservative width for a good forecast).

Bad input (NaN, negative or above-capacity readings, gaps, clock jumps) follows the
:class:`~agent.forecast.base.Forecaster` rules: missing readings are skipped, not imputed.
pvlib and pandas are imported only when this module is used.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from agent.forecast.conformal import LEVELS, ConformalCalibrator
from agent.forecast.errors import ForecastInputError, InsufficientHistoryError
from agent.forecast.result import Forecast
from gridswarm.clock import Clock

logger = logging.getLogger(__name__)


class PVModel:
    """pvlib PVWatts chain for one array."""

    def __init__(self, latitude: float, longitude: float, capacity_w: float, *,
                 tilt: float = 30.0, azimuth: float = 180.0, altitude: float = 0.0,
                 gamma_pdc: float = -0.004, losses: float = 0.14, inverter_eff: float = 0.96,
                 dc_ac_ratio: float = 1.1) -> None:
        import pvlib

        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise ForecastInputError(f"bad site coordinates ({latitude}, {longitude})")
        if not capacity_w > 0:
            raise ForecastInputError(f"capacity_w must be positive, got {capacity_w}")
        self.location = pvlib.location.Location(latitude, longitude, altitude=altitude)
        self.capacity_w = float(capacity_w)
        self.tilt, self.azimuth = float(tilt), float(azimuth)
        self.gamma_pdc, self.losses = float(gamma_pdc), float(losses)
        self.inverter_eff = float(inverter_eff)
        self.ac_w = self.capacity_w / dc_ac_ratio

    def _index(self, ts: np.ndarray, step_s: float) -> Any:
        import pandas as pd

        return pd.DatetimeIndex(pd.to_datetime(np.asarray(ts, dtype=float) + step_s / 2,
                                               unit="s", utc=True))

    def power(self, ts: np.ndarray, step_s: float, ghi: np.ndarray,
              dni: np.ndarray | None = None, dhi: np.ndarray | None = None,
              temp_air: np.ndarray | float = 20.0, wind_speed: np.ndarray | float = 1.0,
              solpos: Any = None) -> np.ndarray:
        """AC power (W) for steps starting at ``ts`` from irradiance (W/m²) and weather."""
        import pvlib

        times = self._index(ts, step_s)
        sp = solpos if solpos is not None else self.location.get_solarposition(times)
        ghi = np.clip(np.nan_to_num(np.asarray(ghi, dtype=float)), 0, None)
        if dni is None or dhi is None:
            parts = pvlib.irradiance.erbs(ghi, sp["zenith"].to_numpy(), times)
            dni, dhi = np.asarray(parts["dni"]), np.asarray(parts["dhi"])
        poa = pvlib.irradiance.get_total_irradiance(
            self.tilt, self.azimuth, sp["apparent_zenith"].to_numpy(), sp["azimuth"].to_numpy(),
            np.asarray(dni, dtype=float), ghi, np.asarray(dhi, dtype=float))
        g = np.nan_to_num(np.asarray(poa["poa_global"], dtype=float))
        tcell = pvlib.temperature.faiman(g, temp_air, wind_speed)
        pdc = pvlib.pvsystem.pvwatts_dc(g, tcell, self.capacity_w, self.gamma_pdc)
        pac = pvlib.inverter.pvwatts(np.asarray(pdc) * (1 - self.losses), self.ac_w,
                                     eta_inv_nom=self.inverter_eff)
        return np.clip(np.nan_to_num(np.asarray(pac, dtype=float)), 0.0, None)

    def clearsky_power(self, ts: np.ndarray, step_s: float) -> np.ndarray:
        """AC power (W) under Ineichen clear sky, 20 °C, 1 m/s wind."""
        times = self._index(ts, step_s)
        sp = self.location.get_solarposition(times)
        cs = self.location.get_clearsky(times, model="ineichen", solar_position=sp)
        return self.power(ts, step_s, cs["ghi"].to_numpy(), cs["dni"].to_numpy(),
                          cs["dhi"].to_numpy(), solpos=sp)


class PVForecaster:
    """PV output forecaster for one site: same ``fit``/``update``/``predict`` as demand.

    ``predict(h)`` without weather uses the clear-sky index; ``predict(h, weather=...)`` runs
    pvlib on a weather forecast: a mapping with ``ghi`` (W/m², one value per step) and
    optionally ``dni``, ``dhi``, ``temp_air`` (°C), ``wind_speed`` (m/s).
    """

    name = "pv_clearsky_index"

    def __init__(self, latitude: float, longitude: float, *, capacity_w: float,
                 step_s: float = 900.0, tilt: float = 30.0, azimuth: float = 180.0,
                 altitude: float = 0.0, clock: Clock | None = None, k_window_s: float = 3600.0,
                 climate_days: int = 14, calib_horizon: int = 96, calib_window: int = 2000,
                 daylight_frac: float = 0.05, **model_kw: Any) -> None:
        if not step_s > 0:
            raise ForecastInputError(f"step_s must be positive, got {step_s}")
        self.model = PVModel(latitude, longitude, capacity_w, tilt=tilt, azimuth=azimuth,
                             altitude=altitude, **model_kw)
        self.step_s = float(step_s)
        self.clock = clock
        self.k_window = max(1, int(round(k_window_s / step_s)))
        self.climate = max(1, int(round(climate_days * 86400 / step_s)))
        self.daylight_w = daylight_frac * self.model.capacity_w
        self.calibrator = ConformalCalibrator(calib_horizon, calib_window)
        self._y = np.empty(0)
        self._cs = np.empty(0)
        self._ts0 = 0.0
        self._cs_cache: dict[int, np.ndarray] = {}
        self._fitted = False
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ clear sky (cached)
    def clearsky(self, ts: np.ndarray) -> np.ndarray:
        """Clear-sky AC power for steps starting at ``ts``, cached by day."""
        ts = np.asarray(ts, dtype=float)
        day_len = int(round(86400 / self.step_s)) or 1
        idx = np.round((ts - self._ts0) / self.step_s).astype(int)
        out = np.empty(len(ts))
        chunks = idx // day_len
        for c in np.unique(chunks):
            if c not in self._cs_cache:
                start = self._ts0 + c * day_len * self.step_s
                self._cs_cache[int(c)] = self.model.clearsky_power(
                    start + self.step_s * np.arange(day_len), self.step_s)
                if len(self._cs_cache) > 60:
                    self._cs_cache.pop(next(iter(self._cs_cache)))
            sel = chunks == c
            out[sel] = self._cs_cache[int(c)][idx[sel] - c * day_len]
        return out

    @property
    def last_ts(self) -> float:
        return self._ts0 + (len(self._y) - 1) * self.step_s

    # ------------------------------------------------------------------ input
    def _clean(self, arr: np.ndarray) -> np.ndarray:
        bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1.5 * self.model.capacity_w)
        if bad.any():
            if "bad" not in self._warned:
                self._warned.add("bad")
                logger.warning("forecast pv: %d missing/negative/over-capacity reading(s) "
                               "ignored", int(bad.sum()))
            arr = arr.copy()
            arr[bad] = np.nan
        elif "bad" in self._warned:
            self._warned.discard("bad")
            logger.info("forecast pv: recovered, readings valid again")
        return arr

    def fit(self, values: Any, start_ts: float) -> PVForecaster:
        arr = np.asarray(values, dtype=float).reshape(-1)
        if len(arr) == 0:
            raise InsufficientHistoryError("no PV history")
        self._ts0 = float(start_ts)
        self._cs_cache.clear()
        self._y = self._clean(arr)
        self._cs = self.clearsky(self._ts0 + self.step_s * np.arange(len(arr)))
        self._fitted = True
        self.calibrator.clear()
        self._prime()
        return self

    def _prime(self) -> None:
        """Rolling-origin backtest over the history to start the interval calibration."""
        n = len(self._y)
        H = self.calibrator.max_h
        first = max(1, n - self.calibrator.window // 4 - H)
        for o in range(first, n - 1, max(1, H // 8)):
            pt = self._point_from(o, min(H, n - 1 - o))
            cs = self._cs[o + 1:o + 1 + len(pt)]
            a = self._y[o + 1:o + 1 + len(pt)]
            day = cs > self.daylight_w
            r = np.full((1, H), np.nan)
            r[0, : len(pt)][day] = ((a - pt) / np.where(day, cs, 1.0))[day]
            self.calibrator.add_backtest(np.zeros((1, H)), r)

    def update(self, new_values: Any, ts: float | None = None) -> None:
        arr = np.asarray(new_values, dtype=float).reshape(-1)
        if not self._fitted:
            self.fit(arr, 0.0 if ts is None else ts)
            return
        if ts is not None:
            lag = int(round((ts - (self.last_ts + self.step_s)) / self.step_s))
            if lag < 0:
                logger.warning("forecast pv: clock went back %d step(s); dropping overlap", -lag)
                arr = arr[-lag:]
            elif lag > 0:
                logger.warning("forecast pv: gap of %d step(s); treated as missing", lag)
                arr = np.concatenate([np.full(lag, np.nan), arr])
        if len(arr) == 0:
            return
        arr = self._clean(arr)
        n0 = len(self._y)
        cs_new = self.clearsky(self._ts0 + self.step_s * np.arange(n0, n0 + len(arr)))
        for i, v in enumerate(arr):
            idx = n0 + i
            c = cs_new[i]
            self.calibrator.record_actual(idx, v / c if c > self.daylight_w else math.nan)
        self._y = np.concatenate([self._y, arr])
        self._cs = np.concatenate([self._cs, cs_new])
        keep = self.climate + self.k_window + 1
        if len(self._y) > 2 * keep:
            cut = len(self._y) - keep
            self._y, self._cs = self._y[cut:], self._cs[cut:]
            self._ts0 += cut * self.step_s
            self._cs_cache.clear()
            self.calibrator._pending.clear()
        # forecast made after this update, scored as values arrive
        n = len(self._y)
        pt = self._point_from(n - 1, self.calibrator.max_h)
        cs = self.clearsky(self._ts0 + self.step_s * np.arange(n, n + len(pt)))
        self.calibrator.add_forecast(n - 1, np.where(cs > self.daylight_w, pt / np.where(
            cs > 0, cs, 1.0), np.nan))

    # ------------------------------------------------------------------ forecast
    def _index_stats(self, o: int) -> tuple[float, float, float]:
        """(recent k, climatological k, rho) from daylight steps up to origin ``o``."""
        lo = max(0, o + 1 - self.climate)
        y = self._y[lo:o + 1]
        cs = self._cs[lo:o + 1]
        day = (cs > self.daylight_w) & np.isfinite(y)
        k = np.where(day, y / np.where(day, cs, 1.0), np.nan)
        kd = k[day]
        k_clim = float(np.clip(np.mean(kd), 0, 1.5)) if len(kd) else 0.7
        recent = k[-self.k_window:]
        recent = recent[np.isfinite(recent)]
        k_now = float(np.clip(np.mean(recent), 0, 1.5)) if len(recent) else k_clim
        pairs = day[1:] & day[:-1]
        if pairs.sum() > 10 and np.std(kd) > 1e-6:
            a, b = k[1:][pairs], k[:-1][pairs]
            rho = float(np.clip(np.corrcoef(a, b)[0, 1], 0.0, 0.999))
            if not math.isfinite(rho):
                rho = 0.8
        else:
            rho = 0.8
        return k_now, k_clim, rho

    def _point_from(self, o: int, horizon: int) -> np.ndarray:
        k_now, k_clim, rho = self._index_stats(o)
        h = np.arange(1, horizon + 1)
        k = k_clim + (k_now - k_clim) * rho ** h
        ts = self._ts0 + self.step_s * (o + h)
        return np.clip(k * self.clearsky(ts), 0.0, self.model.ac_w)

    def predict(self, horizon_steps: int, weather: dict[str, Any] | None = None) -> Forecast:
        if not isinstance(horizon_steps, int | np.integer) or horizon_steps < 1:
            raise ForecastInputError(f"horizon_steps must be a positive int, got {horizon_steps}")
        if not self._fitted:
            raise InsufficientHistoryError("predict() before fit()")
        H = int(horizon_steps)
        n = len(self._y)
        skip = 0
        if self.clock is not None:
            skip = max(0, math.floor((self.clock.now() - self._ts0) / self.step_s) - n)
        ts = self._ts0 + self.step_s * np.arange(n + skip, n + skip + H)
        cs = self.clearsky(ts)
        fallback = None
        model = self.name
        if weather is not None:
            try:
                pt = self._from_weather(ts, weather, H)
                model = "pv_weather"
            except (KeyError, ValueError, TypeError) as exc:
                logger.warning("forecast pv: unusable weather forecast (%s); clear-sky index "
                               "stands in", exc)
                fallback = f"bad weather input: {exc}"
                pt = self._point_from(n - 1, H + skip)[skip:]
        else:
            pt = self._point_from(n - 1, H + skip)[skip:]
        bands = []
        for level in LEVELS:
            lo, hi = self.calibrator.offsets(H, level, skip)
            bands.append((np.clip(pt + lo * cs, 0, self.model.ac_w),
                          np.clip(pt + hi * cs, 0, self.model.ac_w)))
        (l80, u80), (l95, u95) = bands
        if skip:
            fallback = fallback or f"stale data: {skip} step(s) missing before now"
        return Forecast(pt, l80, u80, l95, u95, model=model, step_s=self.step_s,
                        start_ts=float(ts[0]), fallback=fallback)

    def _from_weather(self, ts: np.ndarray, weather: dict[str, Any], H: int) -> np.ndarray:
        def arr(key: str, default: float | None = None) -> Any:
            if key not in weather:
                if default is None:
                    return None
                return default
            a = np.asarray(weather[key], dtype=float).reshape(-1)
            if len(a) < H:
                raise ValueError(f"weather[{key!r}] has {len(a)} values, need {H}")
            return a[:H]

        ghi = arr("ghi")
        if ghi is None:
            raise KeyError("ghi")
        return np.minimum(self.model.power(ts, self.step_s, ghi, arr("dni"), arr("dhi"),
                                           arr("temp_air", 20.0), arr("wind_speed", 1.0)),
                          self.model.ac_w)


# ---------------------------------------------------------------------------- benchmark
def pv_benchmark(test_days: int = 120) -> dict[str, Any]:
    """Clear-sky-index forecaster vs persistence on pvlib power from Greensboro TMY3."""
    from agent.forecast.datasets import load_tmy3

    data, meta = load_tmy3()
    step = 3600.0
    # TMY3 rows are hour-ending: the step starting one hour earlier
    ts = data.index.tz_convert("UTC").as_unit("s").asi8.astype(float) - step
    cap = 5000.0
    model = PVModel(meta["latitude"], meta["longitude"], cap, altitude=meta["altitude"],
                    tilt=30, azimuth=180)
    actual = model.power(ts, step, data["ghi"].to_numpy(), data["dni"].to_numpy(),
                         data["dhi"].to_numpy(), data["temp_air"].to_numpy(),
                         data["wind_speed"].to_numpy())
    n_fit = 60 * 24  # Jan-Feb history; test from 1 Mar
    n_test = test_days * 24
    horizons = (1, 3, 24)
    f = PVForecaster(meta["latitude"], meta["longitude"], capacity_w=cap, step_s=step,
                     altitude=meta["altitude"], tilt=30, azimuth=180, calib_horizon=24,
                     calib_window=1000)
    f.fit(actual[:n_fit], float(ts[0]))
    H = 24
    P = {"pv_clearsky_index": np.full((n_test, H), np.nan), "persistence": np.full(
        (n_test, H), np.nan), "yesterday": np.full((n_test, H), np.nan)}
    L80 = np.full((n_test, H), np.nan)
    U80 = np.full((n_test, H), np.nan)
    L95 = np.full((n_test, H), np.nan)
    U95 = np.full((n_test, H), np.nan)
    A = np.full((n_test, H), np.nan)
    for i in range(n_test):
        o = n_fit + i
        fc = f.predict(H)
        P["pv_clearsky_index"][i] = fc.point
        L80[i], U80[i], L95[i], U95[i] = fc.lower80, fc.upper80, fc.lower95, fc.upper95
        P["persistence"][i] = actual[o - 1]
        P["yesterday"][i] = actual[o - 24 + (np.arange(H) % 24)]
        end = min(len(actual), o + H)
        A[i, : end - o] = actual[o:end]
        f.update(actual[o:o + 1])
    ts_a = ts[n_fit:n_fit + n_test, None] + step * np.arange(H)[None, :]
    day = f.model.clearsky_power(ts_a.ravel(), step).reshape(ts_a.shape) > 0.05 * cap
    mean_day = float(np.nanmean(np.where(day, A, np.nan)))
    res: dict[str, Any] = {}
    for name, p in P.items():
        hs = {}
        for h in horizons:
            ok = day[:, h - 1] & np.isfinite(A[:, h - 1])
            err = np.abs(p[ok, h - 1] - A[ok, h - 1])
            hs[str(h)] = {"n": int(ok.sum()), "mae_w": float(err.mean()),
                          "nmae": float(100 * err.mean() / mean_day)}
        res[name] = {"horizons": hs}
    ok = day & np.isfinite(A)
    res["pv_clearsky_index"]["cover80"] = float(np.mean((A[ok] >= L80[ok]) & (A[ok] <= U80[ok])))
    res["pv_clearsky_index"]["cover95"] = float(np.mean((A[ok] >= L95[ok]) & (A[ok] <= U95[ok])))
    for name in ("persistence", "yesterday"):
        res[name]["cover80"] = res[name]["cover95"] = None
    return {
        "data": "pvlib TMY3 Greensboro NC (723170), hourly; actual = pvlib PVWatts chain on "
                "measured TMY irradiance, 5 kWp, tilt 30°, south",
        "protocol": f"history Jan-Feb, rolling origin over {test_days} days from 1 Mar, "
                    "scored on daylight steps (clear-sky power > 5 % of capacity); nMAE = "
                    f"MAE / mean daylight power ({mean_day:.0f} W)",
        "horizon_labels": {"1": "1 h", "3": "3 h", "24": "24 h"},
        "results": res,
    }
