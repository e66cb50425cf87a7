"""Segmentation transfer, measured: throughput against a bare loop, DRIVE, and phantoms in 2D and 3D.

    .venv/bin/python benchmarks/segment.py throughput            # Segmenter vs a bare PyTorch loop, same run
    .venv/bin/python benchmarks/segment.py drive --seeds 0 1 2   # random init vs SimCLR-on-DRIVE encoder
    .venv/bin/python benchmarks/segment.py phantoms              # random vs task-trained encoder, 10% / 100%

Every result goes to ``benchmarks/out/segment-<task>.json`` and is printed as a markdown table.

- ``throughput``: the same U-Net (smp's on a random-init ResNet-18), the same preloaded DRIVE batches at the same
  size and batch, Adam, BCE, fp32, `--steps` steps each: `Segmenter` (Lightning, step-seeded batches,
  augmentation off, validation once at the end, as its loop does it) against a plain ``for`` loop of forward,
  loss, backward, step. The ratio of their images/s is the overhead of the protocol's machinery.
- ``drive``: a ResNet-18 U-Net (the ``hosseinzadeh2021`` preset: BCE, Adam 1e-3, cosine, the reference's
  augmentations; `--batch` instead of its 32, which with 16 training images is one step an epoch) from random
  init, and from the encoder of a SimCLR pretraining on DRIVE's 16 unlabelled training images (`medtransfer
  pretrain simclr`); test Dice inside the FOV with its bootstrap CI, per seed. `--size` and `--epochs` bound the
  CPU cost (the reference trains at 512 px).
- ``phantoms``: ``phantom-seg-organs-32`` (2D, small-cnn) and ``phantom3d-seg-organs-28`` (3D, the 3D U-Net
  encoder) from random init, and from an encoder first trained to classify the host organ of the lesion
  (``phantom-organ`` finetuning), at 10% and 100% of the segmentation training images.
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

from medtransfer import data, models
from medtransfer.protocols._finetune_data import SubsetDataset
from medtransfer.protocols._unet import build_unet
from medtransfer.protocols.segmentation import Segmenter, preload

DRIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "drive"
OUT = Path("benchmarks/out")


def _env() -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(), "processor": platform.processor()}


def _save(task: str, rows: list[dict[str, Any]]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"segment-{task}.json").write_text(json.dumps({"environment": _env(), "rows": rows}, indent=1))


# ---------------------------------------------------------------- throughput


def _bare_loop(train: Any, size: int, batch: int, steps: int) -> float:
    """images/s of forward + BCE + backward + Adam step on the preloaded images, nothing else."""
    torch.manual_seed(0)
    net = build_unet(models.create("resnet18"), 1)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    contract = models.create("resnet18").card.input
    mean = torch.tensor(contract.mean).view(1, -1, 1, 1)
    std = torch.tensor(contract.std).view(1, -1, 1, 1)
    images, masks = train.pairs(np.arange(len(train)))
    x_all = torch.from_numpy(np.asarray(images)).movedim(-1, 1).float().div(255).sub(mean).div(std)
    y_all = torch.from_numpy(np.asarray(masks)).float()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(train), batch, replace=False))
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x_all[idx])[:, 0], y_all[idx])
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - start)


def _segmenter_rate(splits: dict[str, Any], args: argparse.Namespace) -> float:
    seg = Segmenter(size=args.size, batch_size=args.batch, steps=args.steps, loss="bce", augment="none",
                    patience=None, n_boot=0, progress=False)
    start = time.perf_counter()
    seg.fit(models.create("resnet18"), splits["train"], splits["val"])  # includes preloading and one validation
    return args.steps * args.batch / (time.perf_counter() - start)


def throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Bare loop and Segmenter in A B B A order (the machine's speed drifts), best of each two."""
    splits = {s: data.load("drive", s, data_root=args.data_root) for s in ("train", "val")}
    train = preload(splits["train"], args.size)
    rates: dict[str, list[float]] = {"bare": [], "segment": []}
    for which in ("bare", "segment", "segment", "bare"):
        if which == "bare":
            rate = _bare_loop(train, args.size, args.batch, args.steps)
        else:
            rate = _segmenter_rate(splits, args)
        rates[which].append(rate)
        print(which, round(rate, 2), "images/s", flush=True)
    bare, ours = max(rates["bare"]), max(rates["segment"])
    return [{"what": f"ResNet-18 U-Net, DRIVE at {args.size} px, batch {args.batch}, {args.steps} steps",
             "bare_images_per_s": round(bare, 2), "segment_images_per_s": round(ours, 2),
             "ratio": round(ours / bare, 3), "all": rates}]


# ---------------------------------------------------------------- DRIVE


def _simclr_drive(args: argparse.Namespace) -> str:
    from medtransfer.pretrain import PretrainConfig, pretrain

    folder = OUT / f"simclr-drive-r18-e{args.pretrain_epochs}"
    if not (folder / "model.safetensors").is_file():
        cfg = PretrainConfig(method="simclr", dataset="drive", model="resnet18", epochs=args.pretrain_epochs,
                             data_root=str(args.data_root), batch_size=16)
        res = pretrain(cfg, folder, progress=False)
        print(f"pretrained {folder}: {res.record['images_per_s']} images/s, final loss {res.record['final_loss']:.3f}")
    return str(folder)


def drive(args: argparse.Namespace) -> list[dict[str, Any]]:
    splits = [data.load("drive", s, data_root=args.data_root) for s in ("train", "val", "test")]
    sources = {"random init": "resnet18", "SimCLR on DRIVE": _simclr_drive(args)}
    rows = []
    for seed in args.seeds:
        for init, source in sources.items():
            start = time.perf_counter()
            seg = Segmenter("hosseinzadeh2021", seed=seed, size=args.size, epochs=args.epochs, batch_size=args.batch,
                            n_boot=1000, progress=False).fit(models.create(source), splits[0], splits[1])
            r = seg.score(splits[2])
            rows.append({"init": init, "seed": seed, "dice": r.metrics["dice"], "dice_ci": r.ci["dice"],
                         "iou": r.metrics["iou"], "best_epoch": r.chosen["best_epoch"], "size": args.size,
                         "epochs": args.epochs, "batch": args.batch, "steps": r.chosen["steps"],
                         "wall_s": round(time.perf_counter() - start, 1)})
            print(json.dumps(rows[-1]), flush=True)
            _save("drive", rows)
    return rows


# ---------------------------------------------------------------- phantoms


def _task_trained(arch: str, classification: str, n: int, epochs: int) -> Any:
    """`arch` from random init, finetuned to classify the lesion's host organ (its encoder then segments)."""
    from medtransfer.protocols.finetune import Finetuner

    sp = [data.load(classification, s, n=n if s == "train" else n // 4) for s in ("train", "val")]
    ft = Finetuner("medmnist", epochs=epochs, batch_size=32, n_boot=0, progress=False).fit(
        models.create(arch), sp[0], sp[1])
    backbone = ft.module_.backbone
    backbone.card = models.create(arch).card  # the trained weights under the architecture's card
    return backbone


def phantoms(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    setups = [("phantom-seg-organs-32", "phantom-organ-32", "small-cnn", 1000, 10, 10),
              ("phantom3d-seg-organs-28", "phantom3d-organ-28", "unet-encoder-3d", 200, 10, 8)]
    for seg_name, cls_name, arch, n_seg, cls_epochs, seg_epochs in setups:
        sp = {s: data.load(seg_name, s, n={"train": n_seg, "val": n_seg // 4, "test": n_seg // 2}[s])
              for s in ("train", "val", "test")}
        encoders = {"random init": models.create(arch),
                    "task-trained (organ classification)": _task_trained(arch, cls_name, n_seg, cls_epochs)}
        for fraction in (0.1, 1.0):
            rng = np.random.default_rng(0)
            keep = np.sort(rng.permutation(len(sp["train"]))[:max(2, round(fraction * len(sp["train"])))])
            train = SubsetDataset(sp["train"], keep)
            for init, encoder in encoders.items():
                start = time.perf_counter()
                r = Segmenter(epochs=seg_epochs, batch_size=8 if arch == "small-cnn" else 4, n_boot=1000,
                              progress=False).fit(encoder, train, sp["val"]).score(sp["test"])
                rows.append({"dataset": seg_name, "encoder": arch, "init": init, "fraction": fraction,
                             "n_train": len(train), "dice": r.metrics["dice"], "dice_ci": r.ci["dice"],
                             "wall_s": round(time.perf_counter() - start, 1)})
                print(json.dumps(rows[-1]), flush=True)
                _save("phantoms", rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["throughput", "drive", "phantoms"])
    parser.add_argument("--data-root", type=Path, default=DRIVE)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--pretrain-epochs", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows = {"throughput": throughput, "drive": drive, "phantoms": phantoms}[args.task](args)
    _save(args.task, rows)
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
