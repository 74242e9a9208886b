#!/usr/bin/env python3
"""Synthetic feature-input sequence classifier for irnn's examples.

Task: each example is T=50 frames of F=40 "log filterbank-like" features.
A noisy background (random spectral tilt, temporally correlated noise per
band, random broadband clicks) hides one event at a random time; the class
says which event:

  0..5  a chirp (a ridge of energy moving in frequency) that rises (0..2) or
        falls (3..5) and is centred in the low (0, 3), mid (1, 4) or high
        (2, 5) third of the bands;
  6     a steady tone (a ridge that does not move) anywhere;
  7     a broadband onset (energy steps up in all bands and stays up).

Chirp slopes, tone drift, band centres, durations, amplitudes and start times
are random; a slow, short or weak chirp is hard to tell from a slightly
drifting tone in the noise, so the task is learnable well above chance (1/8)
but not perfectly (about 93% test accuracy; EVENT_GAIN sets the difficulty),
which keeps integer-versus-float accuracy differences visible.  Features
are rounded to multiples of 1/32, as a fixed-point front end would produce,
so they are exactly representable both in float32 and in a Q-format integer
input.

Model: LSTM(40, 64, num_layers=1) -> Linear(64, 8) applied to the output of
the last step (module attributes ``rnn`` and ``head``), trained with Adam
and cosine learning-rate decay on one CPU thread with fixed seeds.

Outputs (next to this script):
  features.safetensors          float32 weights, PyTorch state_dict names
  features.json                 irnn float-model spec
  data/calib.npy                float32 [128, 50, 40]  (training distribution)
  data/test.npy                 float32 [512, 50, 40]
  data/test_labels.npy          int64   [512]
  data/torch_logits_small.npy   float32 [4, 50, 8]  head applied at every
                                step of the first 4 test sequences
  TRAINING.md                   how the model was made and its accuracy

Usage:  python3 examples/features/make_data_and_train.py
"""

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"

T, NF, C = 50, 40, 8        # frames, feature bands, classes
HIDDEN = 64
N_PER_EPOCH, N_TEST, N_CALIB = 8000, 512, 128
# Only the first rows are committed, to keep the repository small (float32 features
# are 8 KB a sequence).
N_TEST_SAVED, N_CALIB_SAVED = 256, 64
DATA_SEED_TRAIN, DATA_SEED_TEST, TORCH_SEED = 101, 202, 303
EVENT_GAIN = 1.6            # event amplitude scale: sets the task difficulty
QUANT = 1.0 / 32            # feature grid
EPOCHS, BATCH, LR, LR_MIN = 30, 64, 3e-3, 5e-5  # fresh data every epoch
CLIP = 1.0

CLASS_NAMES = ["rise-low", "rise-mid", "rise-high", "fall-low", "fall-mid",
               "fall-high", "tone", "onset"]


def make_data(n: int, seed: int):
    """Generate ``n`` labelled sequences: float32 [n, T, NF], int64 [n]."""
    rng = np.random.default_rng(seed)
    t = np.arange(T, dtype=np.float64)[None, :, None]      # [1, T, 1]
    f = np.arange(NF, dtype=np.float64)[None, None, :]     # [1, 1, NF]
    labels = rng.integers(0, C, size=n)

    # Background: random spectral tilt and offset, AR(1) noise per band
    # (correlated in time like real filterbank energies), and clicks.
    tilt = rng.uniform(-1.0, 1.0, (n, 1, 1)) * (f / NF - 0.5)
    level = rng.normal(0.0, 0.3, (n, 1, 1))
    white = rng.normal(0.0, 1.0, (n, T, NF))
    noise = np.empty_like(white)
    noise[:, 0] = white[:, 0]
    rho = 0.6
    for k in range(1, T):
        noise[:, k] = rho * noise[:, k - 1] + math.sqrt(1 - rho * rho) * white[:, k]
    x = level + tilt + 0.45 * noise
    clicks = rng.random((n, T, 1)) < 0.04
    x += clicks * rng.uniform(0.5, 1.5, (n, T, 1))

    # Event timing and amplitude, shared by all classes.
    dur = rng.uniform(14, 26, (n, 1, 1))
    t0 = rng.uniform(0, 1, (n, 1, 1)) * (T - 1 - dur)
    amp = EVENT_GAIN * rng.uniform(0.8, 1.8, (n, 1, 1))
    inside = (t >= t0) & (t <= t0 + dur)
    # Raised-cosine envelope over the event so it fades in and out.
    envelope = inside * 0.5 * (1 - np.cos(2 * np.pi * (t - t0) / dur))

    # Ridge classes (0..6): centre frequency and slope per class.
    band = labels % 3                                        # low/mid/high
    centre = rng.uniform(6, 14, n) + band * 10.0             # 6-14, 16-24, 26-34
    speed = rng.uniform(0.2, 0.6, n)                         # bins per frame
    slope = np.where(labels < 3, speed, -speed)
    tone = labels == 6
    centre[tone] = rng.uniform(6, 34, tone.sum())
    slope[tone] = rng.uniform(-0.06, 0.06, tone.sum())       # slight drift
    freq = centre[:, None, None] + slope[:, None, None] * (t - t0 - dur / 2)
    width = rng.uniform(1.0, 2.0, (n, 1, 1))
    ridge = amp * envelope * np.exp(-0.5 * ((f - freq) / width) ** 2)

    # Onset class (7): broadband step with a random spectral shape.
    onset_t = rng.uniform(8, 42, (n, 1, 1))
    shape = 0.5 + 0.5 * rng.random((n, 1, NF))
    step = 0.6 * amp * shape / (1 + np.exp(-(t - onset_t) / 1.0))

    is_onset = (labels == 7)[:, None, None]
    x += np.where(is_onset, step, ridge)

    # Fixed normalisation (roughly zero mean, unit variance), then the grid.
    x = (x - 0.1) / 0.6
    x = np.round(x / QUANT) * QUANT
    return x.astype(np.float32), labels.astype(np.int64)


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(NF, HIDDEN, num_layers=1, batch_first=True)
        self.head = nn.Linear(HIDDEN, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features [N, T, NF] -> logits at every step [N, T, C]."""
        out, _ = self.rnn(x)
        return self.head(out)


@torch.no_grad()
def accuracy(model: Classifier, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = model(x)[:, -1].argmax(-1)
    model.train()
    return (pred == y).float().mean().item()


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(TORCH_SEED)
    gen = torch.Generator().manual_seed(TORCH_SEED)

    # Training data is generated afresh for every epoch (seed
    # DATA_SEED_TRAIN + epoch), so the model cannot memorise the noise;
    # the test set has its own seed.  The calibration set is drawn from the
    # training distribution (with the epoch-0 seed, but a different count, so
    # these exact sequences are never trained on).
    x_test, y_test = make_data(N_TEST, DATA_SEED_TEST)
    xe, ye = torch.from_numpy(x_test), torch.from_numpy(y_test)
    x_calib = make_data(N_CALIB, DATA_SEED_TRAIN)[0]
    print(f"test data {x_test.shape}, value range [{x_test.min():.2f}, "
          f"{x_test.max():.2f}], std {x_test.std():.2f}")

    model = Classifier()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    steps_per_epoch = N_PER_EPOCH // BATCH
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, EPOCHS * steps_per_epoch, eta_min=LR_MIN)

    t_train, cpu_train = time.time(), time.process_time()
    for epoch in range(EPOCHS):
        x_train, y_train = make_data(N_PER_EPOCH, DATA_SEED_TRAIN + epoch)
        xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
        perm = torch.randperm(N_PER_EPOCH, generator=gen)
        total = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * BATCH:(i + 1) * BATCH]
            logits = model(xt[idx])[:, -1]          # classify from the last step
            loss = F.cross_entropy(logits, yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            opt.step()
            sched.step()
            total += loss.item()
        if (epoch + 1) % 5 == 0 or epoch == 0:
            print(f"epoch {epoch + 1:3d}  loss {total / steps_per_epoch:.4f}  "
                  f"test acc {accuracy(model, xe, ye):.4f}  "
                  f"{time.time() - t_train:5.0f} s", flush=True)
    train_seconds = time.time() - t_train
    cpu_seconds = time.process_time() - cpu_train

    model.eval()
    test_acc = accuracy(model, xe, ye)
    # Accuracy on an unseen batch from the training distribution.
    x_fresh, y_fresh = make_data(4096, DATA_SEED_TRAIN + EPOCHS)
    fresh_acc = accuracy(model, torch.from_numpy(x_fresh), torch.from_numpy(y_fresh))
    with torch.no_grad():
        pred = model(xe)[:, -1].argmax(-1)
    confusion = np.zeros((C, C), dtype=np.int64)
    np.add.at(confusion, (y_test, pred.numpy()), 1)
    print(f"final: test acc {test_acc:.4f}, fresh 4096 acc {fresh_acc:.4f}, "
          f"{train_seconds:.0f} s wall, {cpu_seconds:.0f} s CPU")
    print("confusion (rows = true class):\n" + str(confusion))

    # Weights: PyTorch's own state_dict names, contiguous float32.
    tensors = {name: t.detach().to(torch.float32).contiguous()
               for name, t in model.state_dict().items()}
    save_file(tensors, HERE / "features.safetensors")
    spec = {
        "name": "features",
        "weights": "features.safetensors",
        "input": {"kind": "features", "size": NF},
        "layers": [
            {"op": "lstm", "prefix": "rnn", "num_layers": 1},
            {"op": "linear", "prefix": "head"},
        ],
    }
    (HERE / "features.json").write_text(json.dumps(spec, indent=2) + "\n")

    DATA.mkdir(parents=True, exist_ok=True)
    np.save(DATA / "calib.npy", np.ascontiguousarray(x_calib[:N_CALIB_SAVED]))
    np.save(DATA / "test.npy", np.ascontiguousarray(x_test[:N_TEST_SAVED]))
    np.save(DATA / "test_labels.npy", np.ascontiguousarray(y_test[:N_TEST_SAVED]))
    with torch.no_grad():
        ref = model(xe[:4]).to(torch.float32).numpy()
    np.save(DATA / "torch_logits_small.npy", ref)

    write_report(train_seconds, cpu_seconds, fresh_acc, test_acc, n_params, confusion)


def write_report(seconds, cpu_seconds, fresh_acc, test_acc, n_params, confusion) -> None:
    header = "| true \\ predicted | " + " | ".join(str(i) for i in range(C)) + " |"
    rule = "| --- " * (C + 1) + "|"
    rows = [f"| {i} {CLASS_NAMES[i]} | " + " | ".join(str(v) for v in row) + " |"
            for i, row in enumerate(confusion)]
    report = f"""# features: how the float model was made

Generated by `make_data_and_train.py`; rerun to reproduce (deterministic on
one CPU thread for a given NumPy/PyTorch build):

```
python3 examples/features/make_data_and_train.py
```

- Data: synthetic, made by the script (no download): {T} frames x {NF}
  filterbank-like features; a chirp, tone or onset hidden at a random time
  in correlated noise with clicks; {C} classes: {", ".join(CLASS_NAMES)}.
  Event gain {EVENT_GAIN:g}.  Features are rounded to multiples of 1/32.  Fresh training data every
  epoch ({N_PER_EPOCH} sequences, seed {DATA_SEED_TRAIN} + epoch); {N_TEST} test
  sequences (seed {DATA_SEED_TEST}).  `data/calib.npy` holds {N_CALIB} further
  sequences from the training distribution (not trained on).
- Model: `LSTM({NF}, {HIDDEN}, num_layers=1)` -> `Linear({HIDDEN}, {C})` on the last
  step's output; {n_params:,} parameters (float32).
- Training: Adam, lr {LR:g} cosine-decayed to {LR_MIN:g}, batch {BATCH}, {EPOCHS}
  epochs, gradient-norm clip {CLIP:g}, seed {TORCH_SEED}; {seconds / 60:.1f} min
  wall clock, {cpu_seconds / 60:.1f} min CPU, one thread (PyTorch {torch.__version__}).

| data | accuracy (argmax of last-step logits) |
| --- | --- |
| 4096 fresh sequences from the training distribution | {fresh_acc:.4f} |
| test, `data/test.npy` ({N_TEST}) | {test_acc:.4f} |

Test confusion matrix:

{header}
{rule}
""" + "\n".join(rows) + f"""

`data/torch_logits_small.npy` holds the float32 logits `[4, {T}, {C}]` of this
model at every step of the first 4 test sequences (eval mode, zero state).
"""
    (HERE / "TRAINING.md").write_text(report)


if __name__ == "__main__":
    main()
