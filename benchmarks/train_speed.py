"""Finetuning beside a bare PyTorch loop of the same computation, same machine, same run (issue #17).

The bare loop is the physical limit of this machine for the `medmnist` preset's computation: the same network
(`resnet18-small`, random init, channels-last), the same batches (batch 128, the whole uint8 training set held
as one tensor, shuffled each epoch), Adam 1e-3, fp32, cross-entropy, and one validation pass per epoch (no
augmentation, as the preset). `Finetuner("medmnist", init="scratch")` runs the same epochs with Lightning,
selection on validation AUC and its checkpoint-free fit. Images/s counts training images (validation included in
the time of both).

    .venv/bin/python benchmarks/train_speed.py                       # BreastMNIST 28, 3 epochs, interleaved x2
    .venv/bin/python benchmarks/train_speed.py --epochs 2 --repeats 1 --json

Writes benchmarks/out/train_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medtransfer import data, models
from medtransfer.data.transforms import normalize, to_tensor
from medtransfer.protocols.finetune import Finetuner

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist"
OUT = Path(__file__).resolve().parent / "out" / "train_speed.json"


def _normalised(x: torch.Tensor, contract: Any) -> torch.Tensor:
    """Grey -> 3 channels, the model's normalisation, channels-last: once, before the loop."""
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    x = normalize(x, mean=contract.mean, std=contract.std, normalization=contract.normalization)
    return x.contiguous(memory_format=torch.channels_last)


def bare_loop(train: Any, val: Any, *, epochs: int, batch_size: int = 128, seed: int = 0) -> float:
    """Seconds for `epochs` of the preset's computation in plain PyTorch (validation once per epoch)."""
    torch.manual_seed(seed)
    net = models.create("resnet18-small", pretrained=False)
    head = torch.nn.Linear(net.card.feature_dim, train.card.num_classes)
    model = torch.nn.Sequential(net, head).to(memory_format=torch.channels_last).train()
    contract = net.card.input
    x_all = to_tensor(train.images(np.arange(len(train))))  # (N, C, H, W) float in [0, 1]
    x_all = _normalised(x_all, contract)
    y_all = torch.as_tensor(np.asarray(train.labels).reshape(-1), dtype=torch.long)
    xv = to_tensor(val.images(np.arange(len(val))))
    xv = _normalised(xv, contract)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y_all), generator=g).split(batch_size):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode():
            torch.cat([model(b).softmax(1) for b in xv.split(512)])
    return time.perf_counter() - start


def medtransfer_fit(model: Any, train: Any, val: Any, *, epochs: int) -> float:
    start = time.perf_counter()
    Finetuner("medmnist", init="scratch", epochs=epochs, progress=False, n_boot=0).fit(model, train, val)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="breastmnist")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    train, val = (data.load(args.dataset, s, data_root=DATA) for s in ("train", "val"))
    model = models.create("resnet18-small")
    runs: dict[str, list[float]] = {"bare": [], "medtransfer": []}
    for _ in range(args.repeats):  # interleaved, so that drift on a shared machine hits both alike
        runs["bare"].append(bare_loop(train, val, epochs=args.epochs))
        runs["medtransfer"].append(medtransfer_fit(model, train, val, epochs=args.epochs))
    images = len(train) * args.epochs
    best = {k: min(v) for k, v in runs.items()}
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "threads": torch.get_num_threads()},
           "dataset": args.dataset, "epochs": args.epochs, "seconds": runs,
           "images_per_s": {k: images / s for k, s in best.items()},
           "ratio": best["bare"] / best["medtransfer"]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1))
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{args.dataset}, {args.epochs} epochs: bare {out['images_per_s']['bare']:.1f} img/s, medtransfer "
          f"{out['images_per_s']['medtransfer']:.1f} img/s; medtransfer / bare = {out['ratio']:.2f}")


if __name__ == "__main__":
    main()
