"""Finetuning and SimCLR pretraining beside bare PyTorch loops of the same computation, same machine, same run
(issue #17).

The bare loop is the physical limit of this machine for the `medmnist` preset's computation: the same network
(`resnet18-small`, random init, channels-last), the same batches (batch 128, the whole uint8 training set held
as one tensor, shuffled each epoch), Adam 1e-3, fp32, cross-entropy, and one validation pass per epoch (no
augmentation, as the preset). `Finetuner("medmnist", init="scratch")` runs the same epochs with Lightning,
selection on validation AUC and its checkpoint-free fit. Images/s counts training images (validation included in
the time of both).

The pretraining bare loop is SimCLR as `pretrain simclr` computes it (PROTOCOLS.md §2): `resnet18-small` +
projection 512-512-128, two views per image from the same batched tensor augmentation (`natural`), NT-Xent
(τ 0.07) written out in plain torch, AdamW 5e-4 / wd 1e-4 with a per-step cosine, batch 256 with drop_last, the
whole uint8 training set as one tensor, channels-last, at the precision `pretrain` picks on this machine (bf16
autocast where the CPU has AMX or on CUDA, else fp32). `pretrain()` is timed over its fit (an epoch-end
checkpoint included), not its image decoding. Images/s counts training images (two views each).

    .venv/bin/python benchmarks/train_speed.py                       # BreastMNIST 28, 3 epochs, interleaved x2
    .venv/bin/python benchmarks/train_speed.py --epochs 2 --repeats 1 --json
    .venv/bin/python benchmarks/train_speed.py --what pretrain --epochs 4    # SimCLR: 8 steps of 256
    .venv/bin/python benchmarks/train_speed.py --what datapath   # finetuning's host data path alone, images/s
    .venv/bin/python benchmarks/train_speed.py --what resume     # finetuning with its resume checkpoints

`--what resume` runs `Finetuner` resumable, as the runner and `eval finetune` do (a checkpoint folder): with the
default checkpoint interval (at most one save a minute) and saving after every validation (the interval 0, as
before issue #17), each beside the bare loop.

`--what datapath` times what finetuning does on the host per step (the seeded batch of step s gathered from the
split into a uint8 tensor, pinned when CUDA is there); augmentation and normalisation run on the device. On a GPU
this is what could bind a 28 px epoch, so its rate is the number to set beside the GPU's training images/s.

Writes benchmarks/out/train_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medtransfer import _lightning, data, models
from medtransfer.data.transforms import normalize, to_tensor
from medtransfer.pretrain import PretrainConfig, pretrain
from medtransfer.pretrain.augment import augment
from medtransfer.pretrain.train import resolved_precision
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


def medtransfer_fit(model: Any, train: Any, val: Any, *, epochs: int, checkpoint_every: float | None = None) -> float:
    """Seconds of `Finetuner.fit`; with `checkpoint_every`, resumable as the runner and `eval finetune` run it (a
    checkpoint folder, saves at most once per `checkpoint_every` seconds, 0: after every validation)."""
    folder = Path(tempfile.mkdtemp(prefix="train-speed-")) if checkpoint_every is not None else None
    every = _lightning.CHECKPOINT_EVERY_S
    _lightning.CHECKPOINT_EVERY_S = every if checkpoint_every is None else checkpoint_every
    try:
        start = time.perf_counter()
        Finetuner("medmnist", init="scratch", epochs=epochs, progress=False, n_boot=0,
                  checkpoint_dir=folder).fit(model, train, val)
        return time.perf_counter() - start
    finally:
        _lightning.CHECKPOINT_EVERY_S = every
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def nt_xent(z0: torch.Tensor, z1: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss over 2B embeddings: each view's positive is the other view of its image."""
    z = F.normalize(torch.cat([z0, z1]).float(), dim=1)
    sim = (z @ z.T) / temperature
    sim.fill_diagonal_(float("-inf"))
    n = len(z0)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


def bare_pretrain(train: Any, *, epochs: int, bf16: bool, batch_size: int = 256, seed: int = 0) -> float:
    """Seconds for `epochs` of SimCLR's computation in plain PyTorch (no checkpoints, no logging)."""
    torch.manual_seed(seed)
    net = models.create("resnet18-small", pretrained=False)
    contract = net.card.input
    model = nn.Sequential(net, nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128))
    model = model.to(memory_format=torch.channels_last).train()
    u8 = to_tensor(train.images(np.arange(len(train)))).mul_(255).round_().to(torch.uint8)  # (N, C, H, W)
    steps_per_epoch = len(u8) // batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch, eta_min=5e-4 / 50)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(len(u8), generator=g).split(batch_size)[:steps_per_epoch]:
            x = u8[idx].float().div_(255.0)
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
            views = [normalize(augment(x), mean=contract.mean, std=contract.std, normalization="meanstd")
                     for _ in range(2)]
            batch = torch.cat(views).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                z0, z1 = model(batch).chunk(2)
            loss = nt_xent(z0, z1, 0.07)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return time.perf_counter() - start


def medtransfer_pretrain(dataset: str, *, epochs: int) -> tuple[float, str]:
    """(seconds of `pretrain`'s fit, precision) for `epochs` of SimCLR on `dataset`, in a throw-away folder."""
    out = Path(tempfile.mkdtemp(prefix="train-speed-"))
    try:
        res = pretrain(PretrainConfig("simclr", dataset, model="resnet18-small", epochs=epochs, batch_size=256,
                                      data_root=str(DATA)), out / "simclr", progress=False)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return float(res.record["wall_s"]), str(res.record["precision"])


def data_path_rate(train: Any, *, batch_size: int = 128, steps: int = 400) -> float:
    """Images/s of finetuning's host data path (`StepBatches`), one thread."""
    from medtransfer.protocols._finetune_data import StepBatches

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        it = iter(StepBatches(train, batch_size, 0, steps + 1))
        next(it)
        start = time.perf_counter()
        for x, _ in it:
            if torch.cuda.is_available():
                x.pin_memory()
        return steps * batch_size / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def _compare(what: str, train: Any, val: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved repeats (drift on a shared machine hits both alike); best of each."""
    runs: dict[str, list[float]] = {"bare": [], "medtransfer": []}
    extra: dict[str, Any] = {}
    if what in ("finetune", "resume"):
        model = models.create("resnet18-small")
        images = len(train) * args.epochs
        arms = {"medtransfer": None} if what == "finetune" else {
            "medtransfer": _lightning.CHECKPOINT_EVERY_S, "checkpoint_every_validation": 0.0}
        runs |= {arm: [] for arm in arms}
        for _ in range(args.repeats):
            runs["bare"].append(bare_loop(train, val, epochs=args.epochs))
            for arm, every in arms.items():
                runs[arm].append(medtransfer_fit(model, train, val, epochs=args.epochs, checkpoint_every=every))
    else:
        bf16 = resolved_precision(PretrainConfig("simclr", args.dataset)) == "bf16-mixed"
        images = (len(train) // 256) * 256 * args.epochs
        for _ in range(args.repeats):
            runs["bare"].append(bare_pretrain(train, epochs=args.epochs, bf16=bf16))
            seconds, extra["precision"] = medtransfer_pretrain(args.dataset, epochs=args.epochs)
            runs["medtransfer"].append(seconds)
        extra["bare_precision"] = "bf16 autocast" if bf16 else "fp32"
    best = {k: min(v) for k, v in runs.items()}
    return {"seconds": runs, "images": images, "images_per_s": {k: images / s for k, s in best.items()},
            "ratio": best["bare"] / best["medtransfer"],
            "ratios": {k: best["bare"] / s for k, s in best.items() if k != "bare"}, **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="breastmnist")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--what", choices=("finetune", "pretrain", "both", "resume", "datapath"), default="finetune")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    train, val = (data.load(args.dataset, s, data_root=DATA) for s in ("train", "val"))
    out: dict[str, Any] = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                       "threads": torch.get_num_threads()},
                           "dataset": args.dataset, "epochs": args.epochs}
    if args.what == "datapath":
        rate = data_path_rate(train)
        print(json.dumps({**out, "data_path_images_per_s": rate}) if args.json else
              f"{args.dataset}: the host data path gives {rate:,.0f} images/s (batches of 128, one thread)")
        return
    whats = ("finetune", "pretrain") if args.what == "both" else (args.what,)
    out |= {what: _compare(what, train, val, args) for what in whats}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1))
    if args.json:
        print(json.dumps(out, indent=1))
        return
    for what in whats:
        r = out[what]
        arms = ", ".join(f"{k} {v:.1f} img/s ({r['ratios'][k]:.2f} of bare)" for k, v in r["images_per_s"].items()
                         if k != "bare")
        print(f"{what}, {args.dataset}, {args.epochs} epochs: bare {r['images_per_s']['bare']:.1f} img/s, {arms}")


if __name__ == "__main__":
    main()
