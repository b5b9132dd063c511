import math

import pytest

from agent.control.frequency import FrequencyArm, response_w

ARM = FrequencyArm(droop=0.04, deadband_hz=0.02, nominal_hz=50.0, p_ref_w=10_000.0)


@pytest.mark.parametrize(
    ("hz", "want"),
    [(50.0, 0.0), (49.99, 0.0), (50.02, 0.0), (49.98 - 0.2, 1_000.0), (50.22, -1_000.0), (48.0, 9_900.0)],
)
def test_droop_with_deadband(hz, want):
    assert response_w(ARM, hz) == pytest.approx(want)


def test_max_power_caps_the_response():
    arm = FrequencyArm(droop=0.01, deadband_hz=0.0, p_ref_w=10_000.0, max_power_w=2_000.0)
    assert response_w(arm, 49.0) == 2_000.0
    assert response_w(arm, 51.0) == -2_000.0


@pytest.mark.parametrize(
    "kwargs",
    [{"droop": 0.0}, {"droop": 2.0}, {"deadband_hz": -0.1}, {"nominal_hz": 10.0}, {"p_ref_w": math.inf},
     {"mode": "panic"}, {"max_power_w": -1.0}],
)
def test_bad_arming_is_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FrequencyArm(**kwargs)


def test_active_window():
    arm = FrequencyArm(until_ts=100.0)
    assert arm.active(99.0) and not arm.active(100.0)
    assert not FrequencyArm(mode="standby").active(0.0)
