"""PV array + inverter, driven by real irradiance (pvlib TMY3 data, precomputed).

The hourly profile is computed once with pvlib from a TMY3 file that ships inside pvlib
(``python -m agent.devices.pv`` rebuilds it) and stored as ``data/pv_<name>.csv``: DC power per
Wp of array for the 8,760 hours of the typical year, at hour midpoints, local standard time.
At run time the model only interpolates that table, so a 10 ms tick costs microseconds and the
agent never imports pvlib/pandas (footprint).

How the profile is made (all pvlib's own models): solar position (``get_solarposition``) at the
midpoint of each TMY hour; plane-of-array irradiance on a south-facing array tilted at the
site's latitude (Hay-Davies transposition with extraterrestrial DNI); cell temperature from the
SAPM model (open rack, glass/glass) with TMY air temperature and wind speed; PVWatts DC with
gamma = -0.4 %/K. The AC side (inverter efficiency, clipping at the rating, curtailment) is
applied at run time by :class:`PVModel`.

Profiles: ``greensboro_nc`` (TMY3 723170, Greensboro NC, UTC-5), ``sand_point_ak`` (TMY3 703165,
Sand Point AK, UTC-9). Data: NREL TMY3 as shipped in pvlib.
"""

from __future__ import annotations

import math
import time
from functools import cache
from pathlib import Path

__all__ = ["PROFILES", "PVModel", "build_profile", "load_profile"]

_DATA = Path(__file__).with_name("data")

PROFILES: dict[str, dict[str, object]] = {
    "greensboro_nc": {"tmy3": "723170TYA.CSV", "utc_offset_h": -5.0},
    "sand_point_ak": {"tmy3": "703165TY.csv", "utc_offset_h": -9.0},
}

_HOURS = 8760


def build_profile(name: str) -> list[float]:
    """Compute the hourly DC W/Wp profile with pvlib (imports pvlib and pandas)."""
    import pvlib  # heavy, only here

    meta_src = PROFILES[name]
    path = Path(pvlib.__file__).with_name("data") / str(meta_src["tmy3"])
    data, meta = pvlib.iotools.read_tmy3(str(path), map_variables=True)
    lat, lon, alt = meta["latitude"], meta["longitude"], meta["altitude"]
    # TMY3 values are integrals over the hour ending at the timestamp: evaluate at mid-hour
    times = data.index - __import__("pandas").Timedelta(minutes=30)
    sol = pvlib.solarposition.get_solarposition(times, lat, lon, altitude=alt)
    dni_extra = pvlib.irradiance.get_extra_radiation(times)
    poa = pvlib.irradiance.get_total_irradiance(
        surface_tilt=abs(lat), surface_azimuth=180.0 if lat >= 0 else 0.0,
        solar_zenith=sol["apparent_zenith"].to_numpy(), solar_azimuth=sol["azimuth"].to_numpy(),
        dni=data["dni"].to_numpy(), ghi=data["ghi"].to_numpy(), dhi=data["dhi"].to_numpy(),
        dni_extra=dni_extra.to_numpy(), model="haydavies",
    )
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_glass"]
    import numpy as np

    poa_global = np.nan_to_num(np.clip(np.asarray(poa["poa_global"], dtype=float), 0.0, None))
    t_cell = pvlib.temperature.sapm_cell(poa_global, data["temp_air"].to_numpy(), data["wind_speed"].to_numpy(),
                                         **params)
    pdc = pvlib.pvsystem.pvwatts_dc(poa_global, t_cell, pdc0=1.0, gamma_pdc=-0.004)
    values = [max(0.0, round(float(v), 5)) for v in pdc]
    if len(values) != _HOURS:
        raise ValueError(f"{path} has {len(values)} hours, expected {_HOURS}")
    return values


def write_profile(name: str) -> Path:
    values = build_profile(name)
    out = _DATA / f"pv_{name}.csv"
    src = PROFILES[name]
    with out.open("w") as fh:
        fh.write(f"# DC power per Wp, hourly, local standard time (UTC{src['utc_offset_h']:+g}), hour midpoints.\n")
        fh.write(f"# Built by `python -m agent.devices.pv` with pvlib from TMY3 {src['tmy3']} shipped in pvlib.\n")
        fh.write("w_per_wp\n")
        fh.writelines(f"{v:.5f}\n" for v in values)
    return out


@cache
def load_profile(name: str) -> tuple[float, ...]:
    """The shipped hourly W/Wp profile (no pvlib needed)."""
    if name not in PROFILES:
        raise ValueError(f"unknown PV profile {name!r} (known: {', '.join(PROFILES)})")
    lines = (_DATA / f"pv_{name}.csv").read_text().splitlines()
    values = tuple(float(x) for x in lines if x and not x.startswith("#") and x != "w_per_wp")
    if len(values) != _HOURS:
        raise ValueError(f"PV profile {name} has {len(values)} values, expected {_HOURS}")
    return values


class PVModel:
    """PV array behind its inverter. ``power_w`` >= 0 (generation delivers to the bus)."""

    def __init__(self, peak_w: float, profile: str = "greensboro_nc", *, rated_w: float | None = None,
                 efficiency: float = 0.96, utc_offset_h: float | None = None) -> None:
        self.peak_w = float(peak_w)
        self.profile_name = profile
        self._profile = load_profile(profile)
        self.rated_w = float(rated_w if rated_w is not None else peak_w)
        self.efficiency = float(efficiency)
        off = PROFILES[profile]["utc_offset_h"] if utc_offset_h is None else utc_offset_h
        self.utc_offset_s = float(off) * 3600.0  # type: ignore[arg-type]
        self.limit_w = self.rated_w  # curtailment ceiling (AC)
        self._year_start = (math.inf, -math.inf, 0.0)  # (lo, hi, start) cache

    def _hour_of_year(self, t: float) -> float:
        local = t + self.utc_offset_s
        lo, hi, start = self._year_start
        if not lo <= local < hi:
            year = time.gmtime(local).tm_year
            start = float(_epoch_of_year(year))
            self._year_start = (start, float(_epoch_of_year(year + 1)), start)
        h = (local - start) / 3600.0
        return h % _HOURS  # leap years: 31 Dec maps to 1 Jan of the typical year

    def dc_per_wp(self, t: float) -> float:
        # value i is centred on hour i + 0.5
        x = self._hour_of_year(t) - 0.5
        i = math.floor(x)
        frac = x - i
        p = self._profile
        a = p[i % _HOURS]
        b = p[(i + 1) % _HOURS]
        return a + (b - a) * frac

    def available_w(self, t: float) -> float:
        """AC power the array could deliver at ``t`` with no curtailment."""
        return min(self.rated_w, self.peak_w * self.dc_per_wp(t) * self.efficiency)

    def power_w(self, t: float) -> float:
        return min(self.available_w(t), self.limit_w)


def _epoch_of_year(year: int) -> int:
    import calendar

    return calendar.timegm((year, 1, 1, 0, 0, 0, 0, 0, 0))


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    for _name in PROFILES:
        print(write_profile(_name))
