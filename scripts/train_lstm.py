"""Train the forecasting LSTM with PyTorch and export it for NumPy inference on the gateway.

Needs the ``[train]`` extra (``pip install -r requirements/train.txt``: torch==2.13.0, the CPU
wheel). The runtime (``agent.forecast.lstm``) never imports torch: it reads the ``.npz`` written
here.

Default: England & Wales half-hourly demand (``pmdarima.datasets.load_taylor``), weeks 1-8 only
(weeks 9-12 are the benchmark's test set), 30-minute steps, weekly differences::

    python scripts/train_lstm.py                      # -> agent/forecast/models/lstm_taylor_1800s.npz
    python scripts/train_lstm.py --csv site.csv --step 900 --out my_site.npz

Training is deliberately small (2 cores shared): one LSTM layer, 24 hidden units, stateful
truncated back-propagation over a few parallel segments of the series, a couple of minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.forecast.lstm import MODELS_DIR, N_FEATURES, make_features  # noqa: E402

TAYLOR_START = 959990400.0  # Mon 5 Jun 2000 00:00 UTC


def load_series(args: argparse.Namespace) -> tuple[np.ndarray, float, str]:
    if args.csv:
        from agent.forecast.cli import read_series

        values, ts0, step = read_series(Path(args.csv), args.step)
        return values[: args.train_steps or len(values)], ts0, f"{Path(args.csv).name}"
    from pmdarima.datasets import load_taylor

    y = np.asarray(load_taylor(), dtype=float)
    n = args.train_steps or 8 * 336
    return y[:n], TAYLOR_START, f"load_taylor weeks 1-8 ({n} half-hours)"


def main(argv: list[str] | None = None) -> int:
    import torch
    from torch import nn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", help="timestamp,value CSV (default: load_taylor weeks 1-8)")
    p.add_argument("--step", type=float, default=1800.0, help="step in seconds")
    p.add_argument("--period", type=int, help="season in steps (default: one week)")
    p.add_argument("--train-steps", type=int, help="use only the first N steps")
    p.add_argument("--hidden", type=int, default=24)
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--segments", type=int, default=8)
    p.add_argument("--chunk", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    p.add_argument("--label", help="what the model was trained on (stored in the file)")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(1)
    y, ts0, source = load_series(args)
    source = args.label or source
    period = args.period or int(round(7 * 86400 / args.step))
    scale = float(np.mean(np.abs(y)))
    t = np.arange(period, len(y))
    X = make_features(y, t, period=period, scale=scale, ts0=ts0, step_s=args.step)
    H = args.horizon
    hh = np.arange(1, H + 1)
    idx = t[:, None] + hh[None, :]
    ok = idx < len(y)
    idxc = np.minimum(idx, len(y) - 1)
    Y = np.where(ok, (y[idxc] - y[idxc - period]) / scale, 0.0)

    # stateful truncated BPTT: the series cut into `segments` parallel contiguous streams
    B = args.segments
    L = (len(X) // B // args.chunk) * args.chunk
    Xs = torch.tensor(X[: B * L].reshape(B, L, N_FEATURES), dtype=torch.float32)
    Ys = torch.tensor(Y[: B * L].reshape(B, L, H), dtype=torch.float32)
    Ms = torch.tensor(ok[: B * L].reshape(B, L, H), dtype=torch.float32)

    lstm = nn.LSTM(N_FEATURES, args.hidden, batch_first=True)
    head = nn.Linear(args.hidden, H)
    opt = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=3e-3)
    warm = args.chunk  # steps at the start of each stream not scored (state warming up)
    t0 = time.time()
    for epoch in range(args.epochs):
        state = None
        total = 0.0
        for k in range(0, L, args.chunk):
            out, state = lstm(Xs[:, k:k + args.chunk], state)
            state = (state[0].detach(), state[1].detach())
            pred = head(out)
            m = Ms[:, k:k + args.chunk]
            if k < warm:
                m = m.clone()
                m[:, : warm - k] = 0
            loss = ((pred - Ys[:, k:k + args.chunk]) ** 2 * m).sum() / m.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(list(lstm.parameters()) + list(head.parameters()), 1.0)
            opt.step()
            total += loss.item()
        if epoch % 25 == 0 or epoch == args.epochs - 1:
            print(f"epoch {epoch:4d}  loss {total / (L // args.chunk):.5f}  "
                  f"{time.time() - t0:.0f}s", flush=True)

    out_path = args.out or MODELS_DIR / f"lstm_taylor_{int(args.step)}s.npz"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"trained_on": source, "period": period, "step_s": args.step, "hidden": args.hidden,
            "horizon": H, "epochs": args.epochs, "torch": torch.__version__,
            "features": ["seasonal_diff/scale", "step_diff/scale", "sin_day", "cos_day"]}
    with torch.no_grad():
        np.savez_compressed(
            out_path,
            w_ih=lstm.weight_ih_l0.numpy().astype(np.float32),
            w_hh=lstm.weight_hh_l0.numpy().astype(np.float32),
            b=(lstm.bias_ih_l0 + lstm.bias_hh_l0).numpy().astype(np.float32),
            head_w=head.weight.numpy().astype(np.float32),
            head_b=head.bias.numpy().astype(np.float32),
            meta=np.array(json.dumps(meta)),
        )
    print(f"wrote {out_path} ({out_path.stat().st_size} bytes) in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
