"""NumPy LSTM inference: model file, cell equations, streaming = batch, no torch at runtime."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from forecast_synth import STEP, T0, WEEK, double_seasonal

from agent.forecast import ModelFileError, make_forecaster
from agent.forecast.lstm import DEFAULT_MODEL, LSTMEngine, load_weights

ROOT = Path(__file__).resolve().parents[3]


def test_exported_model_is_small_and_loads():
    assert DEFAULT_MODEL.stat().st_size < 1_000_000
    w = load_weights()
    assert w.w_ih.shape == (4 * w.hidden, 4)
    assert "trained_on" in w.meta and "weeks 1-8" in w.meta["trained_on"]


def test_cell_matches_the_lstm_equations():
    eng = LSTMEngine(WEEK, STEP)
    w = eng.weights
    rng = np.random.default_rng(0)
    x, h, c = rng.normal(size=4), rng.normal(size=w.hidden), rng.normal(size=w.hidden)
    h2, c2 = eng._step(x, h, c)
    z = w.w_ih @ x + w.w_hh @ h + w.b  # PyTorch gate order: input, forget, cell, output
    n = w.hidden
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    i, f, g, o = sig(z[:n]), sig(z[n:2 * n]), np.tanh(z[2 * n:3 * n]), sig(z[3 * n:])
    c_ref = f * c + i * g
    np.testing.assert_allclose(c2, c_ref, rtol=1e-10)
    np.testing.assert_allclose(h2, o * np.tanh(c_ref), rtol=1e-10)


def test_streaming_updates_equal_a_batch_run():
    y = double_seasonal(3 * WEEK)
    a = LSTMEngine(WEEK, STEP)
    a.fit(y[:2 * WEEK + 200], T0)
    for k in range(2 * WEEK + 200, len(y)):
        a.update(y[: k + 1], 1)
    streamed = a._h.copy()
    hs = a._run(y, WEEK)  # same scale and clock, one pass from the start
    np.testing.assert_allclose(streamed, hs[-1], rtol=1e-9)
    assert not np.allclose(streamed, hs[-2])


def test_head_refits_on_site_history_without_torch():
    y = double_seasonal(4 * WEEK, seed=5)
    f = make_forecaster("lstm", step_s=STEP, background=False)
    f.fit(y[:3 * WEEK], T0)
    head = f.engine.head_w.copy()
    for v in y[3 * WEEK:3 * WEEK + 50]:
        f.update([v])
    assert not np.allclose(f.engine.head_w, head)  # refitted after a day of new data


def test_corrupt_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError):
        LSTMEngine(WEEK, STEP, model_path=bad)
    with pytest.raises(ModelFileError):
        LSTMEngine(WEEK, STEP, model_path=tmp_path / "missing.npz")


def test_runtime_path_imports_no_torch_scipy_pvlib_or_coordinator():
    code = (
        "import sys, numpy as np\n"
        "sys.modules['torch'] = None\n"  # importing torch would now fail loudly
        "from agent.forecast import make_forecaster\n"
        "from forecast_synth import double_seasonal\n"
        "y = double_seasonal(3 * 336)\n"
        "for name in ('lstm', 'level_shift_weekly', 'persistence'):\n"
        "    f = make_forecaster(name, step_s=1800.0, background=False).fit(y, 0.0)\n"
        "    f.update(y[-3:]); f.predict(96)\n"
        "bad = [m for m in ('torch', 'scipy', 'pvlib', 'pandas', 'statsmodels', 'coordinator',\n"
        "       'fastapi', 'brownie') if sys.modules.get(m) is not None]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": f"{ROOT}:{Path(__file__).parent}"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_trimming_history_does_not_shift_the_time_features():
    y = double_seasonal(8 * WEEK, seed=9)
    kw = {"step_s": STEP, "background": False, "engine_kw": {"refit_every": 10**9}}
    short = make_forecaster("lstm", max_history=3 * WEEK, **kw).fit(y[:3 * WEEK], T0)
    full = make_forecaster("lstm", max_history=10 * WEEK, **kw).fit(y[:3 * WEEK], T0)
    for v in y[3 * WEEK:]:
        short.update([v])
        full.update([v])
    assert short.n_obs == full.n_obs and len(short.history) < len(full.history)  # trimmed
    np.testing.assert_allclose(short.engine._h, full.engine._h, rtol=1e-9)
    np.testing.assert_allclose(short.predict(96).point, full.predict(96).point, rtol=1e-9)
