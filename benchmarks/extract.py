"""Extraction throughput: the full pipeline (decode + preprocess + forward + cache write) vs the bare forward.

Both run on the same images in one process: the bare forward gets tensors prepared beforehand, so the ratio
pipeline/bare is what decoding, preprocessing, prefetching and writing cost. Also measures the bf16 speed-up
and what bf16 features do to linear-probe accuracy on real MedMNIST data (when ../shared/data is present).

    .venv/bin/python benchmarks/extract.py            # full table (a few minutes on 2 cores)
    .venv/bin/python benchmarks/extract.py --rendered # the same, phantoms rendered per batch inside the pipeline
    .venv/bin/python benchmarks/extract.py --quick    # smaller batches, for a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from medtransfer import data
from medtransfer.features import extract, forward_features, iter_batches
from medtransfer.models import create
from medtransfer.protocols import Features, linear_probe

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist"


def _bare(model: torch.nn.Module, batches: list[torch.Tensor], *, bf16: bool) -> float:
    """Images/s of the model alone on prepared batches (same channels-last + inference mode as the pipeline)."""
    device = torch.device("cpu")
    forward_features(model, batches[0][:2], bf16=bf16, device=device)  # warm-up
    start = time.perf_counter()
    for x in batches:
        forward_features(model, x, bf16=bf16, device=device)
    return sum(len(x) for x in batches) / (time.perf_counter() - start)


def _pipeline(model: torch.nn.Module, ds: data.ImageDataset, *, bf16: bool, size: int, batch: int) -> float:
    start = time.perf_counter()
    extract(model, ds, batch_size=batch, bf16=bf16, input_size=size, cache=False)
    return len(ds) / (time.perf_counter() - start)


def _source(n: int, rendered: bool) -> data.ImageDataset:
    """64 px phantom images, rendered per batch (`rendered`) or decoded once into memory (MedMNIST's case)."""
    ds = data.load("phantom-binary-64", "test", n=n)
    if rendered:
        return ds
    return data.ArrayDataset(ds.card, ds.split, ds.images(np.arange(n)), ds.labels, fingerprint=ds.fingerprint)


def throughput(arch: str, size: int, n: int, batch: int, repeats: int, *, rendered: bool) -> dict:
    """Best-of-`repeats` images/s for the pipeline and the bare forward, fp32 and bf16 (CPU: no prefetch thread)."""
    model = create(arch).to(memory_format=torch.channels_last)
    ds = _source(n, rendered)
    contract = dataclasses.replace(model.card.input, input_size=size)
    batches = list(iter_batches(ds, contract, batch))
    row = {"model": arch, "size": size, "n": n, "batch": batch, "source": "rendered" if rendered else "memory"}
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        bare, pipe = 0.0, 0.0
        for _ in range(repeats):  # interleaved, so a slow spell of the machine hits both sides
            bare = max(bare, _bare(model, batches, bf16=bf16))
            pipe = max(pipe, _pipeline(model, ds, bf16=bf16, size=size, batch=batch))
        row |= {f"bare_{precision}": round(bare, 1), f"pipeline_{precision}": round(pipe, 1),
                f"ratio_{precision}": round(pipe / bare, 3)}
    row["bf16_speedup"] = round(row["bare_bf16"] / row["bare_fp32"], 2)
    return row


def bf16_probe_effect(name: str, model_name: str) -> dict:
    """Linear-probe test accuracy/AUC on fp32 vs bf16 features of a real MedMNIST subset."""
    model = create(model_name)
    out: dict = {"dataset": name, "model": model_name}
    feats = {}
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        splits = {s: extract(model, data.load(name, s, data_root=SHARED), bf16=bf16) for s in ("train", "val", "test")}
        f = {s: Features(np.asarray(v.x), v.y) for s, v in splits.items()}
        r = linear_probe(f["train"], f["test"], val=f["val"], task=data.get_card(name).task,
                         metrics=("accuracy", "auc"))
        out |= {f"acc_{precision}": round(r.metrics["accuracy"], 4), f"auc_{precision}": round(r.metrics["auc"], 4),
                f"C_{precision}": r.chosen["C"]}
        feats[precision] = f["test"].x
    rel = np.abs(feats["bf16"] - feats["fp32"]).max() / np.abs(feats["fp32"]).max()
    out["max_rel_feature_diff"] = round(float(rel), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/out/extract.json")
    parser.add_argument("--rendered", action="store_true", help="render phantoms per batch instead of from memory")
    parser.add_argument("--skip-probe", action="store_true", help="skip the bf16 linear-probe comparison")
    args = parser.parse_args()
    torch.manual_seed(0)
    plan = {28: (1024, 256), 64: (512, 128), 224: (128, 32)}  # size -> (images, batch)
    rows = []
    for arch in ("resnet18", "resnet50"):
        for size, (n, batch) in plan.items():
            n = n // 4 if args.quick else n
            rows.append(throughput(arch, size, n, batch, repeats=1 if args.quick else 3, rendered=args.rendered))
            print(json.dumps(rows[-1]), flush=True)
    probes = []
    if SHARED.is_dir() and not args.skip_probe:
        for name in ("breastmnist", "pneumoniamnist"):
            probes.append(bf16_probe_effect(name, "resnet18-small"))
            print(json.dumps(probes[-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"throughput": rows, "bf16_probe": probes}, indent=1))


if __name__ == "__main__":
    main()
