import pytest

from agent.devices.meter import MeterLog


def test_energy_spreads_over_bins_in_proportion_to_time():
    m = MeterLog(resolution_s=10.0, retention_s=3_600)
    m.add(0.0, 60.0, 6.0, 0.0)
    assert m.window(0.0, 30.0) == pytest.approx((3.0, 0.0))
    assert m.window(25.0, 35.0) == pytest.approx((1.0, 0.0))
    m.add(60.0, 70.0, 0.0, 2.0)
    assert m.window(0.0, 100.0) == pytest.approx((6.0, 2.0))


def test_old_bins_are_forgotten_after_retention():
    m = MeterLog(resolution_s=1.0, retention_s=100)
    m.add(0.0, 1.0, 5.0, 0.0)
    m.add(200.0, 201.0, 1.0, 0.0)
    assert m.window(0.0, 1.0) == (0.0, 0.0)
    assert m.window(200.0, 201.0) == pytest.approx((1.0, 0.0))


def test_bad_input_is_refused():
    m = MeterLog()
    with pytest.raises(ValueError):
        m.add(0, 1, -1.0, 0.0)
    with pytest.raises(ValueError):
        m.window(10, 5)
