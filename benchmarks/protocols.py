"""Protocols side by side with the reference implementations they replace, on real MedMNIST features.

Every comparison is a (name, reference_fn, ours_fn) triple run on the same features: wall time, the
hyper-parameter each picked, and the test metrics. Features come from a random-init ResNet-18-small
(seeded) on breastmnist and pneumoniamnist, extracted once and cached under MEDTRANSFER_HOME.

Each comparison runs twice: with the BLAS/torch thread settings the process starts with (what a user gets),
and with everything pinned to one thread (what the reference costs without thread contention). Our solver
runs single-threaded in both (LinearConfig.n_threads), so the first mode measures what the contention costs
the reference, the second what the algorithm costs.

    MEDTRANSFER_HOME=/tmp/mth-protocols .venv/bin/python benchmarks/protocols.py
    .venv/bin/python benchmarks/protocols.py --datasets breastmnist --modes one   # a quicker run
    .venv/bin/python benchmarks/protocols.py --datasets blobs-10k-2048 --only knn fewshot  # 2048-d timing

To add a protocol (kNN vs sklearn KNeighborsClassifier, few-shot vs a naive per-episode loop), write its two
functions `(splits, task) -> Outcome` and append a `Comparison` to `COMPARISONS`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
from lightly.utils.benchmarking import knn_predict
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

from medtransfer import data, features, models
from medtransfer.protocols import Features, few_shot, linear_probe
from medtransfer.protocols.fewshot import episode_indices
from medtransfer.protocols.knn import knn

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist"
Splits = dict[str, Features]


@dataclass(frozen=True)
class Outcome:
    """What one implementation chose and scored on test."""

    chosen: dict[str, Any]
    metrics: dict[str, float]
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """A reference implementation and ours, both `(splits, task) -> Outcome`."""

    name: str
    reference: Callable[[Splits, str], Outcome]
    ours: Callable[[Splits, str], Outcome]


# ---------------------------------------------------------------- linear probe


def anton2022_reference(splits: Splits, task: str) -> Outcome:
    """jonahanton/SSL_medicalimaging linear.py (PROTOCOLS.md §1.6) on today's scikit-learn.

    scikit-learn >= 1.8 has no multi_class='multinomial'; on two classes it equals one logit at 2C (same
    optimum), which is what runs here for binary tasks.
    """
    train, test = splits["train"], splits["test"]
    factor = 2.0 if task == "binary" else 1.0
    indices = list(range(train.n))
    split = int(np.floor(0.2 * train.n))
    np.random.seed(0)
    np.random.shuffle(indices)
    fit_idx, val_idx = indices[split:], indices[:split]
    clf = LogisticRegression(warm_start=True)
    best_score, best_C, capped = 0.0, float("nan"), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for wd in torch.logspace(-6, 5, 45):
            C = 1.0 / wd.item()
            clf.set_params(C=factor * C)
            clf.fit(train.x[fit_idx], train.y[fit_idx])
            capped += int(clf.n_iter_.max() >= clf.max_iter)
            score = clf.score(train.x[val_idx], train.y[val_idx])
            if score > best_score:
                best_score, best_C = score, C
        clf.set_params(C=factor * best_C)
        clf.fit(train.x, train.y)
    proba = clf.predict_proba(test.x)
    auc = roc_auc_score(test.y, proba[:, 1] if task == "binary" else proba, multi_class="ovr")
    return Outcome({"C": best_C}, {"accuracy": clf.score(test.x, test.y), "auc": float(auc)},
                   {"C at the 100-iteration cap": f"{capped}/45"})


def _probe(preset: str, **overrides: Any) -> Callable[[Splits, str], Outcome]:
    def run(splits: Splits, task: str) -> Outcome:
        r = linear_probe(splits["train"], splits["test"], val=splits["val"], preset=preset, task=task,
                         metrics=("accuracy", "auc"), n_boot=0, **overrides)
        unconverged = sum(not g["converged"] for g in r.grid)
        return Outcome(r.chosen, r.metrics, {"C not converged": f"{unconverged}/{len(r.grid)}"})

    return run


# ---------------------------------------------------------------- kNN and few-shot


def knn_reference(splits: Splits, task: str) -> Outcome:
    """MedMNIST+'s kNN (PROTOCOLS.md §5.7) as scikit-learn: k=11, Euclidean, majority vote."""
    train, test = splits["train"], splits["test"]
    clf = KNeighborsClassifier(n_neighbors=11, algorithm="brute", metric="euclidean").fit(train.x, train.y)
    proba = clf.predict_proba(test.x)
    auc = roc_auc_score(test.y, proba[:, 1] if task == "binary" else proba, multi_class="ovr")
    return Outcome({"k": 11}, {"accuracy": float(clf.score(test.x, test.y)), "auc": float(auc)})


def knn_ours(splits: Splits, task: str) -> Outcome:
    r = knn(splits["train"], splits["test"], k=11, metric="euclidean", weighting="majority", task=task,
            metrics=("accuracy", "auc"), n_boot=0)
    return Outcome({"k": 11}, r.metrics)


def knn_cosine_reference(splits: Splits, task: str) -> Outcome:
    """lightly's ``knn_predict`` (k=20, T=0.07): float32 cosine top-k, which of tied neighbours it keeps is the
    GEMM's last bit. Accuracy only: it returns ranked labels, not probabilities."""
    train, test = splits["train"], splits["test"]
    bank = torch.nn.functional.normalize(torch.tensor(train.x, dtype=torch.float32), dim=1).T
    labels, classes = torch.from_numpy(train.y.astype(np.int64)), int(max(train.y.max(), test.y.max())) + 1
    query = torch.tensor(test.x, dtype=torch.float32)
    pred = torch.cat([knn_predict(torch.nn.functional.normalize(q, dim=1), bank, labels, classes, 20, 0.07)[:, 0]
                      for q in query.split(4096)])
    return Outcome({"k": 20}, {"accuracy": float((pred.numpy() == test.y).mean())})


def knn_cosine_ours(splits: Splits, task: str) -> Outcome:
    r = knn(splits["train"], splits["test"], k=20, task=task, metrics=("accuracy", "auc"), n_boot=0)
    return Outcome({"k": 20}, r.metrics)


def _pool(splits: Splits) -> Features:
    return Features(np.concatenate([f.x for f in splits.values()]), np.concatenate([f.y for f in splits.values()]))


FEWSHOT = {"n_way": 2, "n_support": 20, "n_query": 15, "episodes": 600}


def fewshot_reference(splits: Splits, task: str) -> Outcome:
    """Anton et al.'s ProtoNet evaluation (PROTOCOLS.md §1.5) as a per-episode loop, on the same drawn episodes."""
    pool = _pool(splits)
    index = episode_indices(pool.y, seed=0, **FEWSHOT)  # (E, W, S+Q)
    accs = []
    for episode in index:
        x = pool.x[episode]  # (W, S+Q, D)
        protos = x[:, : FEWSHOT["n_support"]].mean(1)  # (W, D)
        queries = x[:, FEWSHOT["n_support"]:].reshape(-1, x.shape[-1])  # (W*Q, D)
        dist = ((queries[:, None] - protos[None]) ** 2).sum(-1)  # (W*Q, W)
        truth = np.repeat(np.arange(FEWSHOT["n_way"]), FEWSHOT["n_query"])
        accs.append(float((dist.argmin(1) == truth).mean()))
    return Outcome({"episodes": len(accs)}, {"accuracy": float(np.mean(accs))})


def fewshot_ours(splits: Splits, task: str) -> Outcome:
    r = few_shot(_pool(splits), seed=0, **FEWSHOT)
    return Outcome({"episodes": FEWSHOT["episodes"]}, r.metrics)


COMPARISONS = [
    Comparison("linear anton2022: sklearn loop vs replay", anton2022_reference, _probe("anton2022")),
    Comparison("linear anton2022: sklearn loop vs converged fast solver", anton2022_reference,
               _probe("anton2022", solver="fast")),
    Comparison("linear default: sklearn loop vs fast", _probe("default", solver="sklearn"), _probe("default")),
    Comparison("knn k=11 euclidean majority: sklearn vs ours", knn_reference, knn_ours),
    Comparison("knn k=20 cosine T=0.07: lightly knn_predict vs ours", knn_cosine_reference, knn_cosine_ours),
    Comparison("fewshot 2w20s: per-episode loop vs batched", fewshot_reference, fewshot_ours),
]


# ---------------------------------------------------------------- harness


SYNTHETIC = re.compile(r"blobs-(\d+)k-(\d+)")  # blobs-10k-2048: Gaussian class blobs, 10k train, 2048-d


def _synthetic(n_train: int, dim: int) -> tuple[Splits, str]:
    """Seeded Gaussian blobs of 5 classes: n_train train, 1k val, 2k test rows of `dim` float32 features."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, dim)).astype(np.float32)
    splits = {}
    for split, n in (("train", n_train), ("val", 1_000), ("test", 2_000)):
        y = rng.integers(0, 5, n)
        splits[split] = Features(centres[y] * 0.1 + rng.normal(size=(n, dim)).astype(np.float32), y)
    return splits, "multi-class"


def load_features(name: str) -> tuple[Splits, str]:
    """Random-init ResNet-18-small features (seed 0) of every split of a MedMNIST dataset, and its task.

    A name like ``blobs-10k-2048`` gives seeded Gaussian blobs instead (10k train rows of 2048-d features, a
    ResNet-50's width), for timing at sizes the MedMNIST subsets here do not reach.
    """
    if match := SYNTHETIC.fullmatch(name):
        return _synthetic(1000 * int(match[1]), int(match[2]))
    torch.manual_seed(0)
    model = models.create("resnet18-small")
    splits = {}
    for split in ("train", "val", "test"):
        fs = features.extract(model, data.load(name, split, data_root=DATA))
        splits[split] = Features(np.asarray(fs.x), np.asarray(fs.y))
    return splits, data.get_card(name).task


@contextmanager
def _threads(mode: str) -> Iterator[None]:
    """'default': leave BLAS and torch as the process started; 'one': pin both to one thread."""
    if mode == "default":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


def _timed(fn: Callable[[Splits, str], Outcome], splits: Splits, task: str, repeats: int) -> tuple[float, Outcome]:
    """Best-of-`repeats` wall time (the machine may be shared) and the outcome."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(splits, task)
        times.append(time.perf_counter() - start)
    return min(times), out


def compare(c: Comparison, dataset: str, splits: Splits, task: str, mode: str, repeats: int) -> dict[str, Any]:
    """One table row: both implementations on the same features, in the same thread mode."""
    with _threads(mode):
        ref_s, ref = _timed(c.reference, splits, task, repeats)
        our_s, ours = _timed(c.ours, splits, task, repeats)
    row: dict[str, Any] = {"comparison": c.name, "dataset": dataset, "threads": mode,
                           "reference_s": round(ref_s, 3), "ours_s": round(our_s, 3),
                           "speedup": round(ref_s / our_s, 1), "reference_chosen": ref.chosen,
                           "ours_chosen": ours.chosen, "reference_notes": ref.notes, "ours_notes": ours.notes}
    for m in ref.metrics:
        row[f"reference_{m}"], row[f"ours_{m}"] = round(ref.metrics[m], 4), round(ours.metrics[m], 4)
        row[f"delta_{m}_points"] = round(100 * (ours.metrics[m] - ref.metrics[m]), 2)
    return row


def _fmt_chosen(chosen: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in chosen.items())


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    head = ("| comparison | dataset | threads | reference s | ours s | speed-up | reference chose | we chose "
            "| ref acc | our acc | Δacc (pt) | ref AUC | our AUC | ΔAUC (pt) | notes |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        notes = "; ".join(f"ref {k}: {v}" for k, v in r["reference_notes"].items())
        notes += "; " + "; ".join(f"ours {k}: {v}" for k, v in r["ours_notes"].items())
        lines.append(f"| {r['comparison']} | {r['dataset']} | {r['threads']} | {r['reference_s']} | {r['ours_s']} "
                     f"| {r['speedup']}x | {_fmt_chosen(r['reference_chosen'])} | {_fmt_chosen(r['ours_chosen'])} "
                     f"| {r['reference_accuracy']} | {r['ours_accuracy']} | {r['delta_accuracy_points']} "
                     f"| {r.get('reference_auc', '-')} | {r.get('ours_auc', '-')} | {r.get('delta_auc_points', '-')} "
                     f"| {notes} |")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__, "sklearn": sklearn.__version__,
            "numpy": np.__version__, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_at_start": os.getloadavg(), "machine": platform.machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["breastmnist", "pneumoniamnist"])
    parser.add_argument("--modes", nargs="+", choices=["default", "one"], default=["default", "one"])
    parser.add_argument("--only", nargs="+", default=None, metavar="WORD",
                        help="run only the comparisons whose name contains one of these words (e.g. knn fewshot)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/out/protocols.json")
    args = parser.parse_args()
    env = environment()
    rows: list[dict[str, Any]] = []
    for name in args.datasets:
        splits, task = load_features(name)
        for c in COMPARISONS:
            if args.only and not any(word in c.name for word in args.only):
                continue
            rows.extend(compare(c, name, splits, task, mode, args.repeats) for mode in args.modes)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"environment": env, "rows": rows}, indent=2))
    print(markdown(rows))
    print(f"\nenvironment: {env}\nwritten: {args.out}")


if __name__ == "__main__":
    main()
