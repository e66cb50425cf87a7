"""MedMNIST v2's ResNet-18 (28) baseline reproduced: trained from scratch with the `medmnist` finetune preset.

For each dataset and seed: ResNet-18 with the 28 px stem (`resnet18-small`), random init, Adam 1e-3, batch 128,
100 epochs, x0.1 at epochs 50 and 75, the epoch with the best validation AUC kept, then scored on test. A 3D
subset (e.g. `adrenalmnist3d`) trains the paper's ResNet-18+3D (`resnet18-3d-small`) with the same protocol at
batch 32 (`medmnist3d` preset): about 2 s per volume on 2 CPU cores, so a GPU job. Prints
ACC and AUC as mean ± std over seeds next to the paper's (PROTOCOLS.md §5.6) and the training throughput, and
writes every run to benchmarks/out/finetune_medmnist.json.

    .venv/bin/python benchmarks/finetune_medmnist.py                                   # the full benchmark
    .venv/bin/python benchmarks/finetune_medmnist.py --device cuda --seeds 0 1 2
    .venv/bin/python benchmarks/finetune_medmnist.py --datasets breastmnist --epochs 1 --seeds 0   # a smoke
    .venv/bin/python benchmarks/finetune_medmnist.py --datasets adrenalmnist3d --time-steps 3      # cost only

On 2 CPU cores 100 epochs of BreastMNIST take minutes and of PneumoniaMNIST most of an hour per seed: run it in
the background, or on a GPU.
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
from medtransfer.protocols.finetune import Finetuner

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist"
OUT = Path(__file__).resolve().parent / "out" / "finetune_medmnist.json"
# MedMNIST v2 paper, ResNet-18 (28) row: (AUC, ACC) (PROTOCOLS.md §5.6, medmnist.github.io v2.html)
PAPER = {"breastmnist": (0.901, 0.863), "pneumoniamnist": (0.944, 0.854), "pathmnist": (0.983, 0.907),
         "chestmnist": (0.768, 0.947), "dermamnist": (0.917, 0.735), "octmnist": (0.943, 0.743),
         "retinamnist": (0.717, 0.524), "bloodmnist": (0.998, 0.958), "tissuemnist": (0.930, 0.676),
         "organamnist": (0.997, 0.935), "organcmnist": (0.992, 0.900), "organsmnist": (0.972, 0.782),
         # ResNet-18+3D row of the 3D table (trained with `resnet18-3d-small` and the `medmnist3d` preset)
         "organmnist3d": (0.996, 0.907), "nodulemnist3d": (0.863, 0.844), "fracturemnist3d": (0.712, 0.508),
         "adrenalmnist3d": (0.827, 0.721), "vesselmnist3d": (0.874, 0.877), "synapsemnist3d": (0.820, 0.745)}


def _setup(dataset: str) -> tuple[str, str]:
    """(model, preset) of a dataset: the 2D ResNet-18 (28) and `medmnist`, or the paper's ResNet-18+3D at batch 32."""
    volumes = data.get_card(dataset).dims == 3
    return ("resnet18-3d-small", "medmnist3d") if volumes else ("resnet18-small", "medmnist")


def time_steps(dataset: str, args: argparse.Namespace) -> None:
    """Time `--time-steps` training steps on the real data (no validation, no scoring) and project the 100 epochs."""
    train = data.load(dataset, "train", data_root=args.data_root)
    model, preset = _setup(dataset)
    ft = Finetuner(preset, init="scratch", steps=args.time_steps, select_best=False, bf16=args.bf16,
                   device=args.device, progress=args.progress)
    start = time.perf_counter()
    ft.fit(models.create(model), train)
    rate = args.time_steps * ft.cfg.batch_size / (time.perf_counter() - start)
    hours = args.epochs * len(train) / rate / 3600
    print(f"{dataset} ({model}, {preset}): {rate:.2f} images/s over {args.time_steps} steps of "
          f"{ft.cfg.batch_size}; {args.epochs} epochs of {len(train)} images would take {hours:.1f} h", flush=True)


def run_one(dataset: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train and score one seed; returns its metrics, chosen epoch and images/s."""
    train, val, test = (data.load(dataset, s, data_root=args.data_root) for s in ("train", "val", "test"))
    model, preset = _setup(dataset)
    ft = Finetuner(preset, seed=seed, init="scratch", epochs=args.epochs, bf16=args.bf16, device=args.device,
                   progress=args.progress)
    start = time.perf_counter()
    ft.fit(models.create(model), train, val)
    seconds = time.perf_counter() - start
    result = ft.score(test, metrics=("accuracy", "auc"))
    # wall time includes the per-epoch validation passes: images/s is the end-to-end training rate
    return {"dataset": dataset, "seed": seed, "model": model, "accuracy": result.metrics["accuracy"],
            "auc": result.metrics["auc"], "best_epoch": result.chosen["best_epoch"], "train_seconds": seconds,
            "images_per_s": args.epochs * len(train) / seconds, "n_train": len(train), "n_test": len(test)}


def _mean_std(values: list[float]) -> str:
    v = np.asarray(values)
    return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def report(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """One line per dataset: ours (mean ± std over seeds) next to the paper's."""
    print(f"\nFrom scratch: 2D ResNet-18 (28) with the medmnist preset, 3D ResNet-18+3D with medmnist3d; "
          f"{args.epochs} epochs, device={args.device}, bf16={args.bf16}, {torch.get_num_threads()} threads")
    print(f"{'dataset':16} {'seeds':>5} {'ACC (ours)':>15} {'ACC (paper)':>11} {'AUC (ours)':>15} "
          f"{'AUC (paper)':>11} {'images/s':>9}")
    for dataset in args.datasets:
        rs = [r for r in runs if r["dataset"] == dataset]
        auc, acc = PAPER.get(dataset, (float("nan"), float("nan")))
        speed = np.mean([r["images_per_s"] for r in rs])
        print(f"{dataset:16} {len(rs):>5} {_mean_std([r['accuracy'] for r in rs]):>15} {acc:>11.3f} "
              f"{_mean_std([r['auc'] for r in rs]):>15} {auc:>11.3f} {speed:>9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["breastmnist", "pneumoniamnist"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (measure before trusting it)")
    parser.add_argument("--data-root", default=os.environ.get("MEDTRANSFER_DATA", str(DATA)))
    parser.add_argument("--progress", action="store_true", help="a progress bar per run")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--time-steps", type=int, default=None,
                        help="only time this many training steps per dataset and project the full run's hours")
    args = parser.parse_args()
    if args.time_steps:
        for dataset in args.datasets:
            time_steps(dataset, args)
        return
    runs = []
    for dataset in args.datasets:
        for seed in args.seeds:
            runs.append(run_one(dataset, seed, args))
            r = runs[-1]
            print(f"{dataset} seed {seed}: ACC {r['accuracy']:.3f} AUC {r['auc']:.3f} best epoch {r['best_epoch']} "
                  f"({r['train_seconds']:.0f} s, {r['images_per_s']:.0f} images/s)", flush=True)
    report(runs, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"epochs": args.epochs, "device": args.device, "bf16": args.bf16, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
            "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
    args.out.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
