import numpy as np
import pytest
from forecast_synth import DAY, STEP, T0, WEEK, double_seasonal

from agent.forecast.baselines import Persistence, SeasonalLevelShift, SeasonalNaive
from agent.forecast.dshw import DoubleSeasonalES
from agent.forecast.lstm import LSTMEngine


def test_persistence_repeats_last_value():
    y = np.array([1.0, 2.0, 5.0])
    assert Persistence().point(y, 3).tolist() == [5.0, 5.0, 5.0]


def test_seasonal_naive_wraps_beyond_one_period():
    y = np.arange(10, dtype=float)  # period 4: last season is 6, 7, 8, 9
    assert SeasonalNaive(4).point(y, 6).tolist() == [6, 7, 8, 9, 6, 7]


def test_level_shift_matches_definition():
    rng = np.random.default_rng(1)
    y = rng.normal(100, 5, 30)
    P, H = 7, 10
    got = SeasonalLevelShift(P).point(y, H)
    t = len(y) - 1
    want = [y[t] + y[t + (h - 1) % P + 1 - P] - y[t - P] for h in range(1, H + 1)]
    np.testing.assert_allclose(got, want)


@pytest.mark.parametrize("engine", [Persistence(), SeasonalNaive(DAY), SeasonalLevelShift(WEEK),
                                    DoubleSeasonalES(DAY, WEEK),
                                    LSTMEngine(WEEK, STEP)], ids=lambda e: e.name)
def test_backtest_row_at_last_origin_equals_point(engine):
    y = double_seasonal(3 * WEEK)
    engine.fit(y, T0)
    origins = np.array([len(y) - 1])
    np.testing.assert_allclose(engine.backtest(y, origins, 60)[0], engine.point(y, 60),
                               rtol=1e-9)


@pytest.mark.parametrize("engine", [SeasonalNaive(DAY), SeasonalLevelShift(WEEK)],
                         ids=lambda e: e.name)
def test_naive_backtest_uses_only_the_past(engine):
    y = double_seasonal(2 * WEEK)
    o = WEEK + 10
    bt = engine.backtest(y, np.array([o]), 20)[0]
    np.testing.assert_allclose(bt, engine.point(y[: o + 1], 20))


def test_dshw_online_update_matches_a_full_run():
    y = double_seasonal(4 * WEEK, seed=3)
    a = DoubleSeasonalES(DAY, WEEK)
    a.fit(y[: 3 * WEEK], T0)
    for k in range(3 * WEEK, len(y)):
        a.update(y[: k + 1], 1)
    # same parameters, one pass over everything
    b = DoubleSeasonalES(DAY, WEEK)
    b.params = a.params
    b.multiplicative = a.multiplicative
    lvl, d, w = b._init_states(y)
    _, level, e, _, _ = b._run(a.params, y.tolist(), lvl, d, w)
    assert a._level == pytest.approx(level, rel=1e-9)
    assert a._e == pytest.approx(e, rel=1e-6, abs=1e-9)


def test_dshw_beats_seasonal_naive_on_a_double_seasonal_series():
    y = double_seasonal(5 * WEEK, seed=2)
    n = 4 * WEEK
    dshw = DoubleSeasonalES(DAY, WEEK)
    dshw.fit(y[:n], T0)
    naive = SeasonalNaive(WEEK)
    errs_d, errs_n = [], []
    for o in range(n, len(y) - 1):
        errs_d.append(abs(dshw.point(y[:o], 1)[0] - y[o]))
        errs_n.append(abs(naive.point(y[:o], 1)[0] - y[o]))
        dshw.update(y[: o + 1], 1)
    assert np.mean(errs_d) < np.mean(errs_n)


def test_dshw_uses_additive_form_when_series_touches_zero():
    y = double_seasonal(3 * WEEK) - 900.0
    y[y < 0] = 0.0
    e = DoubleSeasonalES(DAY, WEEK)
    e.fit(y, T0)
    assert e.describe()["form"] == "additive"
    assert np.all(np.isfinite(e.point(y, 96)))
