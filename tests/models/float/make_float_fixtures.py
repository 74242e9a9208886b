#!/usr/bin/env python3
"""Small float vanilla-RNN and GRU fixtures for irnn's tests.

Three feature-input sequence classifiers on the synthetic task of
examples/features (T=50 frames of 40 features, 8 classes), each classifying
from the output of the last step:

  rnn_tanh   RNN(40, 48, num_layers=1, nonlinearity="tanh") -> Linear(48, 8)
  rnn_relu   RNN(40, 32, num_layers=2, nonlinearity="relu") -> Linear(32, 8)
  gru_feat   GRU(40, 48, num_layers=2)                      -> Linear(48, 8)

The vanilla RNNs start from identity recurrent weights and zero biases (see
MODELS); the GRU from PyTorch's default initialisation.

Module attributes ``rnn`` and ``head`` make the state_dict names the tensor
names of the irnn float-model format (``rnn.weight_ih_l{k}``, ...).

Training data: not a committed file.  The generator ``make_data`` is imported
from examples/features/make_data_and_train.py, and, as that script does, every
epoch trains on 8000 fresh sequences with seed 101 + epoch (the training
distribution).  No row of examples/features/data/test.npy (seed 202) or
calib.npy (seed 101, 128 rows; its rows differ from epoch 0's 8000) is
trained on.  Adam with cosine learning-rate decay, batch 64, gradient-norm
clip 1.0, fixed seeds, one CPU thread.

Evaluation: accuracy of the argmax of the last-step logits on the committed
examples/features/data/test.npy (256 rows, test_labels.npy), and on the full
512-row test set that the generator makes with seed 202 (its first 256 rows
are test.npy; checked).

Outputs (next to this script), for each NAME:
  NAME.json                 irnn float-model spec
  NAME.safetensors          float32 weights, PyTorch state_dict names
  NAME_torch_logits.npy     float32 [4, 50, 8]: head applied at every step
                            of the first 4 rows of test.npy, zero initial state
and README.md with the accuracies.  Each model's safetensors are reloaded into
a fresh module and must reproduce the saved logits exactly.

Usage:  python3 tests/models/float/make_float_fixtures.py [NAME ...]
"""

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
FEATURES = REPO / "examples" / "features"

spec_ = importlib.util.spec_from_file_location(
    "features_task", FEATURES / "make_data_and_train.py")
task = importlib.util.module_from_spec(spec_)
spec_.loader.exec_module(task)   # main() is guarded: this only defines things

T, NF, C = task.T, task.NF, task.C
N_PER_EPOCH = task.N_PER_EPOCH
DATA_SEED_TRAIN, DATA_SEED_TEST = task.DATA_SEED_TRAIN, task.DATA_SEED_TEST
BATCH, CLIP, LR_MIN = 64, 1.0, 5e-5

# name: (cell, hidden, num_layers, nonlinearity, init, epochs, lr, torch seed)
# init "eye": every weight_hh_l{k} the identity and every bias zero (the
# IRNN initialisation of Le, Jaitly and Hinton, 2015); "default": PyTorch's.
# In probes the vanilla RNNs with PyTorch's default (or an orthogonal)
# recurrent initialisation stayed near chance (~0.2-0.25 after 6-8 epochs);
# with the identity they learn (tanh ~0.43, relu ~0.82 after 10 epochs).
# lr 1e-2 for the tanh RNN stayed near chance.
MODELS = {
    "rnn_tanh": ("rnn", 48, 1, "tanh", "eye", 16, 3e-3, 311),
    "rnn_relu": ("rnn", 32, 2, "relu", "eye", 14, 2e-3, 312),
    "gru_feat": ("gru", 48, 2, None, "default", 12, 3e-3, 313),
}


class Classifier(nn.Module):
    def __init__(self, cell: str, hidden: int, num_layers: int, nonlinearity):
        super().__init__()
        if cell == "gru":
            self.rnn = nn.GRU(NF, hidden, num_layers=num_layers, batch_first=True)
        else:
            self.rnn = nn.RNN(NF, hidden, num_layers=num_layers,
                              nonlinearity=nonlinearity, batch_first=True)
        self.head = nn.Linear(hidden, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features [N, T, NF] -> logits at every step [N, T, C], zero state."""
        out, _ = self.rnn(x)
        return self.head(out)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    was_training = model.training
    model.eval()
    pred = model(x)[:, -1].argmax(-1)
    model.train(was_training)
    return (pred == y).float().mean().item()


def make_one(name: str, x_test, y_test, x_full, y_full) -> dict:
    cell, hidden, num_layers, nonlin, init, epochs, lr, seed = MODELS[name]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Classifier(cell, hidden, num_layers, nonlin)
    if init == "eye":
        with torch.no_grad():
            for pname, p in model.rnn.named_parameters():
                if pname.startswith("weight_hh"):
                    nn.init.eye_(p)
                elif pname.startswith("bias"):
                    nn.init.zeros_(p)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = N_PER_EPOCH // BATCH
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, epochs * steps_per_epoch, eta_min=LR_MIN)

    t0, c0 = time.time(), time.process_time()
    for epoch in range(epochs):
        x_train, y_train = task.make_data(N_PER_EPOCH, DATA_SEED_TRAIN + epoch)
        xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
        perm = torch.randperm(N_PER_EPOCH, generator=gen)
        total = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * BATCH:(i + 1) * BATCH]
            loss = F.cross_entropy(model(xt[idx])[:, -1], yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            opt.step()
            sched.step()
            total += loss.item()
        print(f"{name}: epoch {epoch + 1:2d}  loss {total / steps_per_epoch:.4f}  "
              f"test acc {accuracy(model, x_test, y_test):.4f}  "
              f"{time.time() - t0:5.0f} s wall  {time.process_time() - c0:5.0f} s CPU",
              flush=True)
    wall, cpu = time.time() - t0, time.process_time() - c0

    model.eval()
    acc = accuracy(model, x_test, y_test)
    acc_full = accuracy(model, x_full, y_full)
    with torch.no_grad():
        h_max = model.rnn(x_test)[0].abs().max().item()   # last layer's outputs
    print(f"{name}: test.npy acc {acc:.4f}, 512-row test acc {acc_full:.4f}, "
          f"{wall:.0f} s wall, {cpu:.0f} s CPU, {n_params:,} parameters")

    tensors = {k: v.detach().to(torch.float32).contiguous()
               for k, v in model.state_dict().items()}
    weights = HERE / f"{name}.safetensors"
    save_file(tensors, weights)
    layer = {"op": cell, "prefix": "rnn", "num_layers": num_layers}
    if cell == "rnn":
        layer["nonlinearity"] = nonlin
    spec = {
        "name": name,
        "weights": f"{name}.safetensors",
        "input": {"kind": "features", "size": NF},
        "layers": [layer, {"op": "linear", "prefix": "head"}],
    }
    (HERE / f"{name}.json").write_text(json.dumps(spec, indent=2) + "\n")
    with torch.no_grad():
        ref = model(x_test[:4]).to(torch.float32).numpy()
    logits_path = HERE / f"{name}_torch_logits.npy"
    np.save(logits_path, ref)

    # The exported tensors must reproduce: reload into a fresh module.
    fresh = Classifier(cell, hidden, num_layers, nonlin)
    fresh.load_state_dict(load_file(weights), strict=True)
    fresh.eval()
    with torch.no_grad():
        again = fresh(x_test[:4]).numpy()
    saved = np.load(logits_path)
    assert saved.dtype == np.float32 and saved.shape == (4, T, C)
    assert np.array_equal(again, saved), f"{name}: reload does not reproduce"
    print(f"{name}: reload check: logits {saved.shape} reproduced exactly")

    desc = (f"GRU({NF}, {hidden}, num_layers={num_layers})" if cell == "gru" else
            f"RNN({NF}, {hidden}, num_layers={num_layers}, {nonlin})")
    return {"name": name, "model": f"{desc} -> Linear({hidden}, {C})",
            "params": n_params, "epochs": epochs, "lr": lr, "seed": seed,
            "init": init, "h_max": h_max,
            "acc": acc, "acc_full": acc_full, "wall": wall, "cpu": cpu}


def write_readme(results) -> None:
    rows = "\n".join(
        f"| `{r['name']}` | `{r['model']}` | {r['params']:,} | {r['epochs']} x "
        f"{N_PER_EPOCH} | {r['init']} | {r['lr']:g} | {r['cpu']:.0f} s | "
        f"{r['acc']:.4f} | {r['acc_full']:.4f} | {r['h_max']:.2f} |" for r in results)
    text = f"""# Float vanilla-RNN and GRU test fixtures

Made by `make_float_fixtures.py` (deterministic on one CPU thread for a given
NumPy/PyTorch build; PyTorch {torch.__version__}):

```
python3 tests/models/float/make_float_fixtures.py
```

Feature-input classifiers on the synthetic task of `examples/features`
({T} frames x {NF} features, {C} classes), classifying from the last step's
output.  Training data is generated by importing `make_data` from
`examples/features/make_data_and_train.py`: {N_PER_EPOCH} fresh sequences per
epoch (seed {DATA_SEED_TRAIN} + epoch), as that script trains; no committed
row (`data/test.npy`, `data/calib.npy`) is trained on.  Adam with cosine decay
to {LR_MIN:g}, batch {BATCH}, gradient-norm clip {CLIP:g}; CPU time on one
thread of a shared 2-core machine.

| name | model | parameters | training | init | lr | CPU | acc `test.npy` (256) | acc full test (512) | max abs h |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

Init `eye`: every `weight_hh_l{{k}}` starts as the identity and every bias
as zero (the IRNN initialisation); with PyTorch's default initialisation the
vanilla RNNs stayed near chance on this task in short runs.  `default`:
PyTorch's own.  Max abs h: the largest |output| of the last recurrent layer
over `test.npy` (a ReLU RNN's state is unbounded).  Accuracy is the argmax of
the last-step logits.  The 512-row test set is the
generator's seed-{DATA_SEED_TEST} set, whose first 256 rows are
`examples/features/data/test.npy`.  For comparison the LSTM(40, 64) of
`examples/features` scores about 0.93.

Files for each NAME: `NAME.json` (irnn float-model spec; the recurrent layer
is `{{"op": "rnn", ..., "nonlinearity": ...}}` or `{{"op": "gru", ...}}` with
prefix `rnn`, then `linear` with prefix `head`), `NAME.safetensors` (float32,
PyTorch state_dict names) and `NAME_torch_logits.npy` (float32 [4, {T}, {C}]:
the head applied at every step of the first 4 rows of
`examples/features/data/test.npy`, eval mode, zero initial state).  The script
reloads each safetensors file into a fresh module and checks that it
reproduces those logits exactly.
"""
    (HERE / "README.md").write_text(text)


def main() -> None:
    torch.set_num_threads(1)
    names = sys.argv[1:] or list(MODELS)
    x_np = np.load(FEATURES / "data" / "test.npy")
    y_np = np.load(FEATURES / "data" / "test_labels.npy")
    x_full_np, y_full_np = task.make_data(task.N_TEST, DATA_SEED_TEST)
    assert np.array_equal(x_full_np[:len(x_np)], x_np)
    assert np.array_equal(y_full_np[:len(y_np)], y_np)
    x_test, y_test = torch.from_numpy(x_np), torch.from_numpy(y_np)
    x_full, y_full = torch.from_numpy(x_full_np), torch.from_numpy(y_full_np)

    results = [make_one(n, x_test, y_test, x_full, y_full) for n in names]
    if set(names) == set(MODELS):
        write_readme(results)
    else:
        print("README.md not rewritten (only a subset was made)")


if __name__ == "__main__":
    main()
