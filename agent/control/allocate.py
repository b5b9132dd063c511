"""Sharing one power figure among several stores (water-filling), used by the arbiter for the
batteries and by the flywheel policy for the flywheels."""

from __future__ import annotations

from collections.abc import Sequence

_EPS = 1e-6


def allocate(total_w: float, stores: Sequence[object], caps: list[float], weights: list[float]) -> list[float]:
    """Split ``total_w`` (one sign) over ``stores`` in proportion to ``weights``, within ``caps``
    (water-filling: what a capped store cannot take goes to the others)."""
    n = len(stores)
    out = [0.0] * n
    remaining = abs(total_w)
    free = [i for i in range(n) if caps[i] > _EPS]
    while remaining > _EPS and free:
        wsum = sum(max(weights[i], 1e-9) for i in free)
        nxt = []
        given = 0.0
        for i in free:
            share = remaining * max(weights[i], 1e-9) / wsum
            room = caps[i] - out[i]
            take = min(share, room)
            out[i] += take
            given += take
            if caps[i] - out[i] > _EPS:
                nxt.append(i)
        remaining -= given
        if given <= _EPS:
            break
        free = nxt
    sign = 1.0 if total_w >= 0 else -1.0
    return [sign * x for x in out]
