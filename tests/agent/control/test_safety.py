import math

import pytest

from agent.control.safety import clamp_storage, ramp_clamp

LIM = {"max_charge_w": 3_000.0, "max_discharge_w": 4_000.0, "min_w": -5_000.0, "max_w": 5_000.0}


@pytest.mark.parametrize(
    ("target", "prev", "ramp", "dt", "want", "clamped"),
    [
        (1_000.0, 0.0, math.inf, 1.0, 1_000.0, False),
        (9_000.0, 0.0, math.inf, 1.0, 4_000.0, True),
        (-9_000.0, 0.0, math.inf, 1.0, -3_000.0, True),
        (4_000.0, 0.0, 500.0, 2.0, 1_000.0, True),
        (0.0, 4_000.0, 500.0, 1.0, 3_500.0, True),
    ],
)
def test_clamp_storage(target, prev, ramp, dt, want, clamped):
    value, why = clamp_storage(target, prev_w=prev, ramp_w_per_s=ramp, dt=dt, **LIM)
    assert value == pytest.approx(want)
    assert (why is not None) == clamped


def test_envelope_beats_ramp():
    # the device can no longer discharge (SoC floor): it stops at once, whatever the ramp
    value, why = clamp_storage(2_000.0, prev_w=4_000.0, ramp_w_per_s=10.0, dt=1.0,
                               max_charge_w=3_000.0, max_discharge_w=0.0, min_w=-5_000.0, max_w=5_000.0)
    assert value == 0.0 and why


def test_ramp_clamp_zero_dt_holds():
    assert ramp_clamp(5.0, 1.0, 10.0, 0.0) == 1.0
