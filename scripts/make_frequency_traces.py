"""Synthesise the grid-frequency traces the sim driver replays (``agent/devices/data/``).

No package installed here ships measured grid frequency, so both traces are synthesised, from a
fixed seed, and say so in their headers (see ``docs/fleet.md``):

``frequency_gb_normal_day.csv.gz`` -- 24 h at 1 s. GB-like normal operation: a slow
  Ornstein-Uhlenbeck wander (time constant 180 s) plus a fast one (10 s), and a deviation at each
  half-hour boundary where scheduled generation changes (decaying over ~4 min). Scaled to a
  standard deviation of about 0.06 Hz and clipped to the +-0.2 Hz operational band, the
  figures commonly quoted for GB frequency in normal operation.

``frequency_gb_loss_of_infeed.csv.gz`` -- 15 min at 0.1 s. A 1,320 MW loss of infeed at
  t = 60 s on a 25 GW system with 120 GW.s of stored kinetic energy, load damping 2.5 %/Hz,
  1 GW of fast response following the Dynamic Containment curve (lag 0.3 s), 700 MW of slower
  primary response (ramping over 10 s) and secondary response restoring 50 Hz over minutes:
  a single-bus swing equation, integrated at 10 ms, with the normal-day noise on top.

    python scripts/make_frequency_traces.py      # rewrites both files
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "agent" / "devices" / "data"
F0 = 50.0


def _ou(rng: np.random.Generator, n: int, dt: float, tau: float, sigma: float) -> np.ndarray:
    a = np.exp(-dt / tau)
    b = sigma * np.sqrt(1 - a * a)
    x = np.empty(n)
    x[0] = rng.normal(0, sigma)
    eps = rng.normal(0, 1, n)
    for i in range(1, n):
        x[i] = a * x[i - 1] + b * eps[i]
    return x


def normal_deviation(rng: np.random.Generator, seconds: int, dt: float) -> np.ndarray:
    n = int(seconds / dt)
    t = np.arange(n) * dt
    x = _ou(rng, n, dt, 180.0, 0.045) + _ou(rng, n, dt, 10.0, 0.012)
    # half-hour boundaries: a deviation of random sign/size decaying over ~4 min
    for b in np.arange(0, seconds, 1800.0):
        amp = rng.normal(0, 0.05)
        m = t >= b
        x[m] += amp * np.exp(-(t[m] - b) / 240.0) * (1 - np.exp(-(t[m] - b) / 20.0))
    x *= 0.06 / x.std()
    return np.clip(x, -0.2, 0.2)


def dc_fraction(df: np.ndarray | float) -> np.ndarray:
    """GB Dynamic Containment low/high delivery curve: 0 within +-0.015 Hz, 5 % at 0.2 Hz,
    100 % at 0.5 Hz (sign: + for a frequency below nominal)."""
    d = np.abs(df)
    y = np.where(d <= 0.015, 0.0, np.where(d <= 0.2, 0.05 * (d - 0.015) / 0.185,
                                          0.05 + 0.95 * np.minimum(1.0, (d - 0.2) / 0.3)))
    return -np.sign(df) * y


def loss_of_infeed(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    dt = 0.01
    seconds = 900.0
    n = int(seconds / dt)
    ek = 120_000.0  # MW.s
    demand = 25_000.0
    damping = 0.025 * demand  # MW per Hz
    loss_t, loss = 60.0, 1_320.0
    dc_mw, prim_mw = 1_000.0, 700.0
    df = 0.0
    dc = prim = sec = 0.0
    out = np.empty(n)
    for i in range(n):
        t = i * dt
        p_loss = loss if t >= loss_t else 0.0
        dc += (dc_mw * float(dc_fraction(df)) - dc) * dt / 0.3
        prim_target = prim_mw * min(1.0, max(-1.0, -df / 0.5))
        prim += np.clip(prim_target - prim, -prim_mw * dt / 10.0, prim_mw * dt / 10.0)
        sec += -df * 25.0 * dt if t >= loss_t + 30.0 else 0.0  # MW per Hz.s, from 30 s after
        balance = dc + prim + sec - p_loss - damping * df
        df += F0 / (2 * ek) * balance * dt
        out[i] = df
    step = 10  # keep 0.1 s
    t = np.arange(0, n, step) * dt
    noise = normal_deviation(rng, int(seconds), 0.1)[: len(t)] * 0.5
    return t, F0 + out[::step] + noise


def write(path: Path, header: str, t: np.ndarray, hz: np.ndarray) -> None:
    with gzip.open(path, "wt", compresslevel=9) as fh:
        for line in header.strip().splitlines():
            fh.write(f"# {line}\n")
        fh.write("t_s,hz\n")
        for a, b in zip(t, hz, strict=True):
            fh.write(f"{a:g},{b:.4f}\n")


def main() -> None:
    rng = np.random.default_rng(20260621)
    day = 86_400
    dev = normal_deviation(rng, day, 1.0)
    write(OUT / "frequency_gb_normal_day.csv.gz",
          "SYNTHESISED (not measured): GB-like normal day, 1 s, scripts/make_frequency_traces.py\n"
          f"std {dev.std():.4f} Hz, min {F0 + dev.min():.3f} Hz, max {F0 + dev.max():.3f} Hz",
          np.arange(day, dtype=float), F0 + dev)
    t, hz = loss_of_infeed(rng)
    write(OUT / "frequency_gb_loss_of_infeed.csv.gz",
          "SYNTHESISED (not measured): 1320 MW loss of infeed at t=60 s, swing equation, 0.1 s,\n"
          f"scripts/make_frequency_traces.py; nadir {hz.min():.3f} Hz at t={t[hz.argmin()]:.1f} s",
          t, hz)
    print(f"normal day: std {dev.std():.4f} Hz; event nadir {hz.min():.3f} Hz at {t[hz.argmin()]:.1f} s, "
          f"at 300 s {hz[3000]:.3f} Hz, at 899 s {hz[-1]:.3f} Hz")


if __name__ == "__main__":
    main()
