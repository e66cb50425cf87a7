"""SimCLR pretraining of ResNet-18 (28 px stem) on MedMNIST and on a phantom, against random initialisation.

For each dataset: SimCLR-pretrain ``resnet18-small`` on the training split (labels unused, PROTOCOLS.md §2
defaults), then
  (a) linear probe (default preset: C chosen on val) on frozen features: pretrained vs random init;
  (b) finetuning (``medmnist`` preset, test scored once with the val-selected epoch) from the pretrained weights vs
      from scratch, with 1% and 10% of the training labels (the same stratified rows for both).
Prints one table and writes the numbers, seeds and pretraining throughput (images/s) as JSON.

    .venv/bin/python benchmarks/pretrain.py                                     # breastmnist + phantom-binary-32
    .venv/bin/python benchmarks/pretrain.py --dataset pneumoniamnist --epochs 100 --device cuda
    .venv/bin/python benchmarks/pretrain.py --smoke        # only checks that it runs: 260 s on a busy 2-core machine

The claim under test is PROTOCOLS.md §5.5: SimCLR-pretrained ResNet-18 beats random init on the linear probe,
and finetuning from it beats training from scratch with few labels.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from medtransfer import data, features, models
from medtransfer.data.splits import label_subset
from medtransfer.pretrain import PretrainConfig, pretrain
from medtransfer.protocols import Features, linear_probe
from medtransfer.protocols._finetune_data import SubsetDataset, labels_of
from medtransfer.protocols.finetune import finetune

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist"
BASE = "resnet18-small"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="breastmnist", help="MedMNIST dataset (files under --data-root)")
    p.add_argument("--phantom", default="phantom-binary-32", help="phantom dataset ('' to skip)")
    p.add_argument("--data-root", default=str(DATA))
    p.add_argument("--epochs", type=int, default=50, help="SimCLR epochs")
    p.add_argument("--augmentation", default="natural")
    p.add_argument("--ft-epochs", type=int, default=30, help="finetuning epochs (medmnist preset otherwise)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--samples", type=int, default=None, help="pretrain on a random subset of this many images")
    p.add_argument("--phantom-n", type=int, default=None, help="phantom training-set size (default: the loader's)")
    p.add_argument("--out", default="runs/bench-pretrain", help="model folders and results.json go here")
    p.add_argument("--smoke", action="store_true", help="tiny settings: checks the script runs, numbers mean nothing")
    a = p.parse_args()
    if a.smoke:
        a.epochs, a.ft_epochs, a.samples, a.phantom_n, a.fractions = 1, 1, 64, 200, [0.1]
    return a


def _splits(name: str, a: argparse.Namespace) -> dict[str, data.ImageDataset]:
    opts = {"n": a.phantom_n} if name.startswith("phantom") and a.phantom_n else {}
    return {s: data.load(name, s, data_root=a.data_root, **opts) for s in ("train", "val", "test")}


def _probe(model_src: str, splits: dict[str, data.ImageDataset], seed: int, device: str | None) -> dict[str, float]:
    net = models.create(model_src)
    fs = {s: features.extract(net, ds, bf16=False, device=device) for s, ds in splits.items()}
    feats = {s: Features(f.x, labels_of(splits[s])) for s, f in fs.items()}
    res = linear_probe(feats["train"], feats["test"], val=feats["val"], task=splits["train"].card.task, seed=seed)
    return dict(res.metrics)


def _finetune(model_src: str, splits: dict[str, data.ImageDataset], *, fraction: float, seed: int, init: str,
              a: argparse.Namespace, device: str | None) -> dict[str, float]:
    train = splits["train"]
    keep = label_subset(labels_of(train), fraction=fraction, seed=seed)
    res = finetune(models.create(model_src), SubsetDataset(train, keep), splits["val"], splits["test"],
                   preset="medmnist", seed=seed, init=init, epochs=a.ft_epochs, device=device, progress=False,
                   task=train.card.task)
    return dict(res.metrics) | {"n_train": int(len(keep))}


def run_dataset(name: str, a: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Pretrain on `name`, then probe and finetune pretrained vs random init."""
    device = None if a.device == "auto" else a.device
    cfg = PretrainConfig("simclr", name, model=BASE, epochs=a.epochs, augmentation=a.augmentation, seed=seed,
                         samples=a.samples, data_root=a.data_root,
                         dataset_options={"n": a.phantom_n} if name.startswith("phantom") and a.phantom_n else {},
                         accelerator={"cpu": "cpu", "cuda": "gpu"}.get(a.device, "auto"))
    folder = Path(a.out) / f"simclr-{name}-s{seed}-e{a.epochs}"
    t0 = time.perf_counter()
    rec = pretrain(cfg, folder, progress=False).record
    out: dict[str, Any] = {"dataset": name, "seed": seed, "pretrain": {k: rec[k] for k in (
        "epochs", "steps", "n_images", "batch_size", "final_loss", "images_per_s", "device", "precision")},
        "pretrain_wall_s": round(time.perf_counter() - t0, 1)}
    splits = _splits(name, a)
    out["linear"] = {"simclr": _probe(str(folder), splits, seed, device), "random": _probe(BASE, splits, seed, device)}
    out["finetune"] = {}
    for f in a.fractions:
        out["finetune"][f"{f:g}"] = {
            "simclr": _finetune(str(folder), splits, fraction=f, seed=seed, init="pretrained", a=a, device=device),
            "scratch": _finetune(BASE, splits, fraction=f, seed=seed, init="scratch", a=a, device=device)}
    return out


def _print(results: list[dict[str, Any]]) -> None:
    print(f"{'dataset':20} {'seed':>4} {'protocol':16} {'metric':9} {'pretrained':>10} {'baseline':>10}  diff")
    for r in results:
        rows = [("linear", "simclr", "random", r["linear"])]
        rows += [(f"finetune {k}", "simclr", "scratch", v) for k, v in r["finetune"].items()]
        for proto, ours, base, res in rows:
            for metric in ("accuracy", "auc"):
                x, y = res[ours][metric], res[base][metric]
                print(f"{r['dataset']:20} {r['seed']:>4} {proto:16} {metric:9} {x:10.4f} {y:10.4f}  {x - y:+.4f}")
        p = r["pretrain"]
        print(f"  pretraining: {p['epochs']} epochs, {p['steps']} steps of {p['batch_size']} on {p['n_images']} "
              f"images, final loss {p['final_loss']:.4f}, {p['images_per_s']} images/s on {p['device']} "
              f"({p['precision']}), {r['pretrain_wall_s']} s")


def main() -> None:
    a = _args()
    os.environ.setdefault("MEDTRANSFER_HOME", str(Path(a.out) / "home"))  # feature cache beside the results
    names = [n for n in (a.dataset, a.phantom) if n]
    results = [run_dataset(n, a, s) for n in names for s in a.seeds]
    _print(results)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    path = Path(a.out) / ("results-smoke.json" if a.smoke else "results.json")
    path.write_text(json.dumps({"args": vars(a), "results": results}, indent=1, default=float) + "\n")
    print(f"written {path}")


if __name__ == "__main__":
    main()
