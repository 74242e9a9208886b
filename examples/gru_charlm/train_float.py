#!/usr/bin/env python3
"""Train the float character-level GRU language model used by irnn's examples.

Model:  Embedding(V, 64) -> GRU(64, 256, num_layers=1) -> Linear(256, V),
with module attributes ``embed``, ``rnn`` and ``head`` so that the
state_dict names are exactly the tensor names of the irnn float-model format
(``rnn.weight_ih_l0`` [3H, I] etc., PyTorch gate order r, z, n).

Data: the same as examples/charlm (read from ``../charlm/data`` and
``../charlm/vocab.json``; run ``../charlm/prepare_data.py`` first if those
are missing).  Nothing is copied here.

Training: Adam, batch 32 random windows of 64+1 characters from
``../charlm/data/train.txt`` (truncated BPTT, zero initial state per window),
gradient norm clipping at 1.0, linear warm-up then cosine learning-rate decay,
fixed seed, one CPU thread.

Metric: bits per character (bpc), exactly as examples/charlm/train_float.py:
every row is run from a zero state, the logits at step t predict token t+1,
and bpc is the mean of -log2 softmax over all N x (T-1) predictions.
Validation uses all non-overlapping 256-character windows of
``../charlm/data/valid.txt``; the test figure uses ``../charlm/data/test.npy``.

Outputs (next to this script):
  gru_charlm.safetensors        float32 weights, PyTorch state_dict names
  gru_charlm.json               irnn float-model spec
  data/torch_logits_small.npy   float32 [4, 64, V] logits on
                                ../charlm/data/test_small.npy
  TRAINING.md                   how the model was made, with the final metrics

Usage:  python3 examples/gru_charlm/train_float.py [--steps N] [--lr LR]
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
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
CHARLM = HERE.parent / "charlm"
CHARLM_DATA = CHARLM / "data"
OUT_DATA = HERE / "data"

SEED = 1234
EMBED_DIM = 64
HIDDEN = 256
NUM_LAYERS = 1
BATCH = 32
SEQ_LEN = 64
LR = 4e-3        # 1e-2 (the LSTM's) diverged after ~1000 steps (bpc 2.5 -> 5.8)
LR_MIN = 1e-4
WARMUP = 100
CLIP = 1.0
DEFAULT_STEPS = 5500  # 6.5 min of CPU on one thread here (0.071 s CPU a step)
EVAL_EVERY = 500
EVAL_WINDOW = 256


class GruCharLM(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, EMBED_DIM)
        self.rnn = nn.GRU(EMBED_DIM, HIDDEN, num_layers=NUM_LAYERS, batch_first=True)
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
def bits_per_char(model: nn.Module, rows: torch.Tensor, batch: int = 64) -> float:
    """Mean -log2 p(token t+1 | tokens <= t) over all rows, zero state per row."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), batch):
        x = rows[i:i + batch].long()
        logits = model(x[:, :-1])
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                              x[:, 1:].reshape(-1), reduction="sum")
        total += nll.item()
        count += x[:, 1:].numel()
    model.train(was_training)
    return total / count / math.log(2)


def lr_at(step: int, steps: int, lr: float) -> float:
    if step < WARMUP:
        return lr * (step + 1) / WARMUP
    progress = (step - WARMUP) / max(1, steps - WARMUP)
    return LR_MIN + 0.5 * (lr - LR_MIN) * (1 + math.cos(math.pi * progress))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--lr", type=float, default=LR)
    parser.add_argument("--probe", action="store_true",
                        help="train and print only; write no files")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)

    vocab = json.loads((CHARLM / "vocab.json").read_text())
    index = {ch: i for i, ch in enumerate(vocab)}
    V = len(vocab)
    train = load_ids(CHARLM_DATA / "train.txt", index)
    valid = load_ids(CHARLM_DATA / "valid.txt", index)
    n_valid = len(valid) // EVAL_WINDOW
    valid_rows = valid[:n_valid * EVAL_WINDOW].view(n_valid, EVAL_WINDOW)
    quick_valid = valid_rows[::max(1, n_valid // 128)]  # periodic, cheaper check
    test_rows = torch.from_numpy(np.load(CHARLM_DATA / "test.npy"))

    model = GruCharLM(V)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"vocab {V}, parameters {n_params:,}, train chars {len(train):,}, "
          f"steps {args.steps}, lr {args.lr:g}")
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    start, cpu_start = time.time(), time.process_time()
    running = None
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr)
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
            print(f"step {step + 1:5d}  lr {lr_at(step, args.steps, args.lr):.2e}  "
                  f"train bpc {running:.3f}  valid bpc "
                  f"{bits_per_char(model, quick_valid):.3f}  "
                  f"{time.time() - start:6.0f} s wall  "
                  f"{time.process_time() - cpu_start:6.0f} s CPU", flush=True)
    train_seconds = time.time() - start
    cpu_seconds = time.process_time() - cpu_start
    print(f"trained {args.steps} steps in {train_seconds:.0f} s wall, {cpu_seconds:.0f} s CPU")

    model.eval()
    valid_bpc = bits_per_char(model, valid_rows)
    test_bpc = bits_per_char(model, test_rows)
    print(f"final valid bpc {valid_bpc:.4f} ({n_valid} windows of {EVAL_WINDOW})")
    print(f"final test bpc  {test_bpc:.4f} (../charlm/data/test.npy {tuple(test_rows.shape)})")
    if args.probe:
        return

    # Weights: PyTorch's own state_dict names, contiguous float32.
    tensors = {name: t.detach().to(torch.float32).contiguous()
               for name, t in model.state_dict().items()}
    weights = HERE / "gru_charlm.safetensors"
    save_file(tensors, weights)
    spec = {
        "name": "gru_charlm",
        "weights": "gru_charlm.safetensors",
        "input": {"kind": "tokens", "vocab_size": V},
        "layers": [
            {"op": "embedding", "prefix": "embed"},
            {"op": "gru", "prefix": "rnn", "num_layers": NUM_LAYERS},
            {"op": "linear", "prefix": "head"},
        ],
    }
    (HERE / "gru_charlm.json").write_text(json.dumps(spec, indent=2) + "\n")

    # Reference logits for checking the Rust float reference against PyTorch.
    small = torch.from_numpy(np.load(CHARLM_DATA / "test_small.npy")).long()
    with torch.no_grad():
        ref = model(small).to(torch.float32).numpy()
    OUT_DATA.mkdir(parents=True, exist_ok=True)
    np.save(OUT_DATA / "torch_logits_small.npy", ref)

    # The exported tensors must reproduce: reload into a fresh module.
    fresh = GruCharLM(V)
    fresh.load_state_dict(load_file(weights), strict=True)
    fresh.eval()
    with torch.no_grad():
        again = fresh(small).numpy()
    saved = np.load(OUT_DATA / "torch_logits_small.npy")
    assert saved.dtype == np.float32 and saved.shape == (small.shape[0], small.shape[1], V)
    assert np.array_equal(again, saved), "reloaded weights do not reproduce the logits"
    print(f"reload check: logits {saved.shape} reproduced exactly")

    write_report(args.steps, args.lr, train_seconds, cpu_seconds, valid_bpc, test_bpc,
                 n_params, V, n_valid, tuple(test_rows.shape))


def write_report(steps, lr, seconds, cpu_seconds, valid_bpc, test_bpc, n_params, V,
                 n_valid, test_shape) -> None:
    report = f"""# gru_charlm: how the float model was made

Generated by `train_float.py`; rerun to reproduce (deterministic on one CPU
thread for a given PyTorch build, up to floating-point differences between
builds).  It reads the data of `examples/charlm` (no copy here):

```
python3 examples/charlm/prepare_data.py      # only if ../charlm/data is missing
python3 examples/gru_charlm/train_float.py   # -> gru_charlm.safetensors, gru_charlm.json
```

- Data: the char LM data of `examples/charlm` (Shakespeare, split by whole
  works, see `../charlm/data/split.json`); the {V}-character vocabulary of
  `../charlm/vocab.json`.
- Model: `Embedding({V}, {EMBED_DIM})` -> `GRU({EMBED_DIM}, {HIDDEN}, num_layers={NUM_LAYERS})`
  -> `Linear({HIDDEN}, {V})`; {n_params:,} parameters (float32).  PyTorch
  `nn.GRU` tensors `rnn.weight_ih_l0` [{3 * HIDDEN}, {EMBED_DIM}], `rnn.weight_hh_l0`
  [{3 * HIDDEN}, {HIDDEN}], `rnn.bias_ih_l0`, `rnn.bias_hh_l0` [{3 * HIDDEN}], gate order r, z, n.
- Training: Adam, lr {lr:g} with {WARMUP}-step warm-up and cosine decay to
  {LR_MIN:g}, batch {BATCH} random windows of {SEQ_LEN} characters (truncated
  BPTT, zero initial state), gradient-norm clip {CLIP:g}, seed {SEED},
  {steps} steps, {cpu_seconds / 60:.1f} min CPU on one thread ({seconds / 60:.1f} min
  wall clock on a shared 2-core machine; PyTorch {torch.__version__}).
- Metric: bits per character, computed as in `../charlm/train_float.py`:
  each row from a zero state, logits at step t predicting token t+1, mean
  -log2 softmax over all N x (T-1) predictions.

| split | data | bpc |
| --- | --- | --- |
| valid | all {n_valid} non-overlapping 256-char windows of `../charlm/data/valid.txt` | {valid_bpc:.4f} |
| test | `../charlm/data/test.npy` ({test_shape[0]} x {test_shape[1]}) | {test_bpc:.4f} |

For comparison, the 2-layer LSTM of `examples/charlm` scores 2.2937 bpc on
the same test rows (see `../charlm/TRAINING.md`).

`data/torch_logits_small.npy` holds the float32 logits `[4, 64, {V}]` of this
model on `../charlm/data/test_small.npy` (eval mode, zero initial state per
row).  The script reloads `gru_charlm.safetensors` into a fresh module and
checks that it reproduces these logits exactly.
"""
    (HERE / "TRAINING.md").write_text(report)


if __name__ == "__main__":
    main()
