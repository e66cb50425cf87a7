"""Phantom difficulty: a linear probe on random-init features vs one on an encoder trained on the task.

For each phantom task this trains a `resnet18-small` encoder (plus a linear head) supervised on the train
split, saves the backbone to safetensors and loads it back through ``create(..., weights=path)``, then runs
the same linear probe (C chosen on val, scored on test with bootstrap 95% CIs) on the features of the trained
encoder and of the fixed-seed random initialisation it started from. Nothing is selected on test: the epoch
is chosen by the head's val accuracy, C by the probe's val accuracy.

    MEDTRANSFER_HOME=/tmp/mth-difficulty .venv/bin/python benchmarks/phantom_difficulty.py          # see below
    MEDTRANSFER_HOME=/tmp/mth-difficulty .venv/bin/python benchmarks/phantom_difficulty.py --quick  # smoke run

Writes benchmarks/out/phantom_difficulty.json (settings + one row per task) and prints a markdown table.
The defaults took 25 min on 2 CPU cores shared with other jobs (train 6-9 img/s at 64 px); about 15 min is
expected on 2 idle cores (~12 train img/s). At this budget (16 Adam steps) the encoder does not yet learn the
tasks: see the per-epoch losses and val accuracies in the JSON before reading the probe gap.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from medtransfer import data
from medtransfer.data.transforms import preprocess
from medtransfer.features import extract
from medtransfer.models import create
from medtransfer.protocols import Features, linear_probe
from medtransfer.protocols.metrics import evaluate

TASKS = ("binary", "organ", "grade")


@dataclasses.dataclass(frozen=True)
class Settings:
    """One run's settings; saved beside the results."""

    arch: str = "small-cnn"  # 3 conv blocks + global max pool: learns the lesion tasks in minutes on a CPU
    size: int = 64
    # 6 epochs of 3000 images (~280 steps) keep each task near 2 minutes on 2 CPU cores (~150 train img/s)
    n_train: int = 3000
    n_val: int = 500
    n_test: int = 1000
    epochs: int = 6
    batch: int = 64
    lr: float = 2e-3  # Adam; cosine-decayed to 0 over all steps, since a few epochs give few steps
    seed: int = 0
    train_bf16: bool = False  # bf16 autocast while training (slower than fp32 on CPUs without AMX)
    extract_bf16: bool = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_splits(task: str, s: Settings) -> dict[str, data.ImageDataset]:
    name = f"phantom-{task}-{s.size}"
    sizes = {"train": s.n_train, "val": s.n_val, "test": s.n_test}
    return {split: data.load(name, split, n=n, seed=s.seed) for split, n in sizes.items()}


def batches(images: np.ndarray, labels: np.ndarray, order: np.ndarray, model: nn.Module, batch: int
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Preprocessed (x, y) batches in `order`, x channels-last (B, 3, S, S) as the model's card prescribes."""
    kw = dataclasses.asdict(model.card.input)  # type: ignore[arg-type]
    for lo in range(0, len(order), batch):
        idx = order[lo:lo + batch]
        x = preprocess(images[idx], **kw).contiguous(memory_format=torch.channels_last)
        yield x, torch.from_numpy(labels[idx])


@torch.inference_mode()
def head_accuracy(backbone: nn.Module, head: nn.Module, images: np.ndarray, labels: np.ndarray, *,
                  s: Settings) -> float:
    backbone.eval()
    correct = 0
    for x, y in batches(images, labels, np.arange(len(labels)), backbone, s.batch):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.train_bf16):
            correct += int((head(backbone(x)).argmax(1) == y).sum())
    return correct / len(labels)


def train_epoch(backbone: nn.Module, head: nn.Module, opt: torch.optim.Optimizer, sched: Any,
                images: np.ndarray, labels: np.ndarray, *, s: Settings, rng: np.random.Generator) -> float:
    """One pass over the train images in a seeded random order; returns the mean loss."""
    backbone.train()
    losses = []
    for x, y in batches(images, labels, rng.permutation(len(labels)), backbone, s.batch):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.train_bf16):
            logits = head(backbone(x))  # (B, C)
        loss = nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def train_encoder(splits: dict[str, data.ImageDataset], num_classes: int, s: Settings
                  ) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """Supervised training from the card's random init; keeps the epoch with the best head val accuracy."""
    seed_everything(s.seed)
    backbone = create(s.arch).to(memory_format=torch.channels_last)
    head = nn.Linear(backbone.card.feature_dim, num_classes)  # type: ignore[arg-type]
    params = [*backbone.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=s.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, s.epochs * -(-s.n_train // s.batch))
    (x_tr, y_tr), (x_va, y_va) = ((d.images(np.arange(len(d))), d.labels) for d in (splits["train"], splits["val"]))
    rng, log, best, train_s = np.random.default_rng(s.seed), [], (-1.0, None), 0.0
    for epoch in range(1, s.epochs + 1):
        start = time.perf_counter()
        loss = train_epoch(backbone, head, opt, sched, x_tr, y_tr, s=s, rng=rng)
        train_s += time.perf_counter() - start
        val_acc = head_accuracy(backbone, head, x_va, y_va, s=s)
        log.append({"epoch": epoch, "loss": round(loss, 4), "val_accuracy": round(val_acc, 4)})
        if val_acc > best[0]:
            best = (val_acc, copy.deepcopy((backbone.state_dict(), head.state_dict(), epoch)))
    sd_backbone, sd_head, epoch = best[1]  # type: ignore[misc]
    backbone.load_state_dict(sd_backbone)
    head.load_state_dict(sd_head)
    info = {"epochs": s.epochs, "chosen_epoch": epoch, "train_images_per_s": round(s.epochs * s.n_train / train_s, 1),
            "train_s": round(train_s, 1), "log": log}
    return backbone.eval(), head.eval(), info


def save_and_reload(backbone: nn.Module, folder: Path, arch: str) -> nn.Module:
    """Round-trip the backbone through safetensors and the real `create(name, weights=path)` path."""
    path = folder / f"{arch}-trained.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(path))
    return create(arch, weights=path)


def features(model: nn.Module, splits: dict[str, data.ImageDataset], s: Settings) -> dict[str, Features]:
    sets = {split: extract(model, ds, batch_size=s.batch, bf16=s.extract_bf16) for split, ds in splits.items()}
    return {split: Features(np.asarray(fs.x), fs.y) for split, fs in sets.items()}


def _scores(metrics: dict[str, float], ci: dict[str, tuple[float, float]]) -> dict[str, Any]:
    return {k: {"value": round(v, 4), "ci": [round(c, 4) for c in ci[k]]} for k, v in metrics.items()}


def probe(feats: dict[str, Features], card: data.DatasetCard, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    r = linear_probe(feats["train"], feats["test"], val=feats["val"], task=card.task, metrics=card.metrics,
                     seed=seed)
    return {"C": r.chosen["C"], "probe_s": round(time.perf_counter() - start, 1), **_scores(r.metrics, r.ci)}


@torch.inference_mode()
def head_scores(head: nn.Module, test: Features, card: data.DatasetCard, seed: int) -> dict[str, Any]:
    """The supervised head's own test metrics, on the trained encoder's extracted test features."""
    proba = torch.softmax(head(torch.from_numpy(np.array(test.x))), 1).numpy()  # (N, C)
    scores = evaluate(card.task, test.y, proba, card.metrics, seed=seed)
    return _scores({k: v[0] for k, v in scores.items()}, {k: (v[1], v[2]) for k, v in scores.items()})


def run_task(task: str, s: Settings, tmp: Path) -> dict[str, Any]:
    start = time.perf_counter()
    splits = load_splits(task, s)
    card = data.get_card(f"phantom-{task}-{s.size}")
    backbone, head, info = train_encoder(splits, card.num_classes, s)
    trained = save_and_reload(backbone, tmp, s.arch)
    feats = {"random": features(create(s.arch), splits, s), "trained": features(trained, splits, s)}
    row = {"dataset": card.name, "task": card.task, **info,
           "random_probe": probe(feats["random"], card, s.seed),
           "trained_probe": probe(feats["trained"], card, s.seed),
           "head": head_scores(head, feats["trained"]["test"], card, s.seed)}
    return row | {"wall_s": round(time.perf_counter() - start, 1)}


def _fmt(score: dict[str, Any]) -> str:
    low, high = score["ci"]
    return f"{score['value']:.3f} [{low:.3f}, {high:.3f}]"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: probe accuracy/AUC (95% CI) on random vs trained features, head accuracy, cost."""
    head = ("| dataset | random probe acc | random probe AUC | trained probe acc | trained probe AUC | "
            "head acc | epochs (chosen) | train img/s | wall s |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        rp, tp = r["random_probe"], r["trained_probe"]
        lines.append(f"| {r['dataset']} | {_fmt(rp['accuracy'])} | {_fmt(rp['auc'])} | {_fmt(tp['accuracy'])} | "
                     f"{_fmt(tp['auc'])} | {_fmt(r['head']['accuracy'])} | {r['epochs']} ({r['chosen_epoch']}) | "
                     f"{r['train_images_per_s']} | {r['wall_s']} |")
    return "\n".join(lines)


def parse_args() -> tuple[Settings, list[int], list[str], Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny splits and 1 epoch, for a smoke run")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, help="phantom tasks to run")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64], help="phantom sizes (px), e.g. 64 32")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/phantom_difficulty.json"))
    for f in dataclasses.fields(Settings):
        if f.name == "size":
            continue
        kind = argparse.BooleanOptionalAction if f.type in (bool, "bool") else None
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=None if kind else type(f.default),
                            action=kind, default=f.default)
    args = parser.parse_args()
    s = Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings) if f.name != "size"})
    if args.quick:
        s = dataclasses.replace(s, n_train=128, n_val=64, n_test=128, epochs=1)
    return s, args.sizes, args.tasks, args.out


def main() -> None:
    s, sizes, tasks, out = parse_args()
    rows, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for size, task in ((size, task) for size in sizes for task in tasks):
            rows.append(run_task(task, dataclasses.replace(s, size=size), Path(tmp)))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "log"}), flush=True)
    result = {"settings": dataclasses.asdict(s) | {"sizes": sizes, "torch": torch.__version__,
                                                   "threads": torch.get_num_threads()},
              "total_wall_s": round(time.perf_counter() - start, 1), "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(table(rows))
    print(f"\ntotal wall time {result['total_wall_s']} s; wrote {out}")


if __name__ == "__main__":
    main()
