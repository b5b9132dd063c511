"""Synthetic loads: deterministic per seed, independent of the sampling rate, bursts, shedding."""

import pytest

from agent.devices.load import LoadModel

T0 = 1_750_000_000.0


@pytest.mark.parametrize("profile", ["household", "commercial", "datacentre"])
def test_same_seed_same_trace_other_seed_other_trace(profile):
    a = LoadModel(profile, 5_000, seed=1)
    b = LoadModel(profile, 5_000, seed=1)
    c = LoadModel(profile, 5_000, seed=2)
    ts = [T0 + 37 * k for k in range(2_000)]
    assert [a.demand_w(t) for t in ts] == [b.demand_w(t) for t in ts]
    assert [a.demand_w(t) for t in ts] != [c.demand_w(t) for t in ts]


def test_value_does_not_depend_on_sampling():
    a = LoadModel("household", 5_000, seed=3)
    b = LoadModel("household", 5_000, seed=3)
    fine = {T0 + k: a.demand_w(T0 + k) for k in range(0, 3600, 1)}
    for k in range(0, 3600, 60):
        assert b.demand_w(T0 + k) == fine[T0 + k]


def test_datacentre_has_bursts():
    m = LoadModel("datacentre", 10_000, seed=5)
    vals = [m.demand_w(T0 + 10 * k) for k in range(8_640)]  # one day
    base = sorted(vals)[len(vals) // 2]
    assert sum(v > base * 1.2 for v in vals) > 20


def test_shedding_only_touches_the_sheddable_part():
    m = LoadModel("household", 5_000, seed=1, sheddable_fraction=0.3)
    t = T0 + 3_600 * 4
    d = m.demand_w(t)
    m.set_limit(0.0)
    assert m.served_w(t) == pytest.approx(0.7 * d)
    assert m.power_w(t) == pytest.approx(-0.7 * d)
