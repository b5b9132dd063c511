import pytest

from agent.control.device_loop import device_loop

KW = {"low_threshold": 0.3, "high_threshold": 0.8, "low_use_w": 500.0}


@pytest.mark.parametrize(
    ("soc", "load", "pv", "kind", "energy"),
    [
        (0.1, 0.0, 0.0, "request", 2_000.0),
        (0.29, 5_000.0, 0.0, "request", 100.0),
        (0.5, 0.0, 0.0, "hold", 0.0),
        (0.9, 200.0, 0.0, "contribute", 1_000.0),
        (0.9, 3_000.0, 4_000.0, "contribute", 1_000.0),  # PV covers local use
        (0.9, 3_000.0, 0.0, "hold", 0.0),  # local use is not low
        (None, 0.0, 0.0, "hold", 0.0),
    ],
)
def test_device_loop(soc, load, pv, kind, energy):
    intent = device_loop(soc, 10_000.0, load, pv, **KW)
    assert intent.kind == kind
    assert intent.energy_wh == pytest.approx(energy)
    assert intent.reason
