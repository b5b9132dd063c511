"""Deterministic pseudo-random numbers as a pure function of (seed, stream, index).

Synthetic profiles use these so a value at time ``t`` depends only on the seed and ``t``:
the result of a simulation does not depend on how often it is sampled (10 ms or 60 s ticks).
"""

from __future__ import annotations

_MASK = (1 << 64) - 1


def _mix(z: int) -> int:
    # splitmix64 finaliser
    z = (z + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def uniform(seed: int, stream: int, index: int) -> float:
    """A number in [0, 1) fixed by its three integer arguments."""
    return _mix(_mix((seed * 1_000_003 + stream) & _MASK) ^ (index & _MASK)) / 18446744073709551616.0
