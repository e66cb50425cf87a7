"""The analyses, measured: occlusion speed against the reference's one-copy-at-a-time loop, strided maps against the
exact map, invariance cost per transform, and the phantom pointing game.

    .venv/bin/python benchmarks/analysis.py speed        # batched exact map vs a batch-1 loop, same model, same image
    .venv/bin/python benchmarks/analysis.py stride       # stride 2/4/8 vs stride 1: Pearson r, top-10% IoU, time
    .venv/bin/python benchmarks/analysis.py invariance   # seconds per (model, transform)
    .venv/bin/python benchmarks/analysis.py pointing     # random init vs task-trained encoder, with bootstrap CIs

Results go to ``benchmarks/out/analysis-<task>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtransfer import data, models
from medtransfer.analysis import invariance as inv
from medtransfer.analysis import saliency as sal
from medtransfer.data.transforms import preprocess
from medtransfer.features import resolve_contract

OUT = Path(__file__).parent / "out"


def _save(task: str, rows: Any) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / f"analysis-{task}.json").write_text(json.dumps(rows, indent=1, default=float))


def _images(model: torch.nn.Module, dataset: str, n: int, size: int | None = None) -> torch.Tensor:
    import dataclasses

    ds = data.load(dataset, "test", n=max(n, 2))
    return preprocess(ds.images(np.arange(n)), **dataclasses.asdict(resolve_contract(model, size)))


@torch.inference_mode()
def reference_loop(model: torch.nn.Module, x: torch.Tensor, window: int) -> np.ndarray:
    """Anton et al.'s way: one occluded copy per forward, its score added under the window."""
    h, w = x.shape[1:]
    out = np.zeros((h, w))
    f0 = model(x[None])[0]
    norm = f0.norm()
    for i in range(h - window + 1):
        for j in range(w - window + 1):
            occ = x.clone()
            occ[:, i:i + window, j:j + window] = 0.0
            out[i:i + window, j:j + window] += float((model(occ[None])[0] - f0).norm() / norm)
    return out / window ** 2


def rows_of(x: torch.Tensor, window: int) -> int:
    return (x.shape[-1] - window + 1) ** 2


def speed(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for name, dataset, size, window in (("small-cnn", "phantom-binary-32", None, 4),
                                        ("resnet18", "phantom-binary-64", 64, 6)):
        model = models.create(name).eval()
        x = _images(model, dataset, 1, size)
        t = time.perf_counter()
        ref = reference_loop(model, x[0], window)
        t_ref = time.perf_counter() - t
        t = time.perf_counter()
        ours = sal.occlusion_map(model, x, window=window, batch_size=args.batch)[0]
        t_ours = time.perf_counter() - t
        rel = float(np.abs(ours - ref).max() / np.abs(ref).max())
        with torch.inference_mode():  # the machine's limit: the same number of copies as plain batched forwards
            batch = x.expand(args.batch, *x.shape[1:]).contiguous(memory_format=torch.channels_last)
            t = time.perf_counter()
            for _ in range(-(-rows_of(x, window) // args.batch)):
                model(batch)
            t_bare = time.perf_counter() - t
        rows.append({"model": name, "image": x.shape[-1], "window": window,
                     "positions": (x.shape[-1] - window + 1) ** 2, "reference_s": round(t_ref, 2),
                     "ours_s": round(t_ours, 2), "bare_batched_forward_s": round(t_bare, 2),
                     "speedup": round(t_ref / t_ours, 1), "max_rel_diff": rel})
        print(json.dumps(rows[-1]), flush=True)
    # what one Anton-style map (ResNet-50, 242 px, window 10, 233^2 copies) costs here: the rate of a few batches
    model = models.create("resnet50").eval()
    x = torch.randn(1, 3, 242, 242)
    starts = torch.from_numpy(np.stack(np.meshgrid(np.arange(8), np.arange(args.batch // 8), indexing="ij"),
                                       -1).reshape(-1, 2))
    sal._scores(model, x[0], starts[:8], 10, 0.0, 8, None)  # warm-up
    t = time.perf_counter()
    sal._scores(model, x[0], starts, 10, 0.0, args.batch, None)
    rate = len(starts) / (time.perf_counter() - t)
    rows.append({"model": "resnet50", "image": 242, "window": 10, "positions": 233 ** 2,
                 "copies_per_s": round(rate, 1), "seconds_per_map": round(233 ** 2 / rate, 0)})
    print(json.dumps(rows[-1]), flush=True)
    _save("speed", rows)
    return rows


def _trained(dataset: str, n: int, epochs: int) -> torch.nn.Module:
    from medtransfer.protocols.finetune import Finetuner

    splits = [data.load(dataset, s, n=n if s == "train" else n // 4) for s in ("train", "val")]
    ft = Finetuner("medmnist", epochs=epochs, batch_size=64, n_boot=0, progress=False).fit(
        models.create("small-cnn"), *splits)
    test = data.load(dataset, "test", n=1000)
    print(f"{dataset}: task-trained small-cnn, test metrics {ft.score(test).metrics}", flush=True)
    backbone = ft.module_.backbone
    backbone.card = models.create("small-cnn").card
    return backbone.eval()


def stride(args: argparse.Namespace) -> list[dict[str, Any]]:
    model = models.create("resnet18").eval()
    x = _images(model, "phantom-binary-64", 4, 64)
    t = time.perf_counter()
    exact = sal.occlusion_map(model, x, window=6)
    t_exact = time.perf_counter() - t
    rows = [{"stride": 1, "seconds": round(t_exact, 2), "pearson_r": 1.0, "top10_iou": 1.0}]
    for s in (2, 4, 8):
        t = time.perf_counter()
        approx = sal.occlusion_map(model, x, window=6, stride=s)
        sec = time.perf_counter() - t
        r = [float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) for a, b in zip(exact, approx, strict=True)]
        iou = [sal.top_iou(a, b) for a, b in zip(exact, approx, strict=True)]
        rows.append({"stride": s, "seconds": round(sec, 2), "pearson_r": round(float(np.mean(r)), 4),
                     "pearson_r_min": round(float(np.min(r)), 4), "top10_iou": round(float(np.mean(iou)), 3),
                     "top10_iou_min": round(float(np.min(iou)), 3)})
        print(json.dumps(rows[-1]), flush=True)
    _save("stride", rows)
    return rows


def invariance(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    ds = data.load("phantom-binary-64", "test", n=200)
    for name in ("small-cnn", "resnet18"):
        model = models.create(name).eval()
        t = time.perf_counter()
        feats = inv._features(model, ds.images(np.arange(200)), resolve_contract(model), 64, torch.device("cpu"))
        stats = inv.Whitening.fit(feats)
        t_stats = time.perf_counter() - t
        for transform in ("rotation", "h_flip", "brightness", "blur", "deform"):
            t = time.perf_counter()
            r = inv.invariance(model, ds, transform, stats, k=8, n_images=100)
            sec = time.perf_counter() - t
            rows.append({"model": name, "transform": transform, "k": len(r.settings), "images": 100,
                         "seconds": round(sec, 2), "images_per_s": round(len(r.settings) * 100 / sec, 1),
                         "cosine": round(r.mean_cosine, 4), "stats_s": round(t_stats, 2)})
            print(json.dumps(rows[-1]), flush=True)
    _save("invariance", rows)
    return rows


def _ci(values: np.ndarray, seed: int = 0) -> list[float | None]:
    """The bootstrap 95% interval of the mean over images, as the store's analysis rows carry it."""
    from medtransfer.runner.analyses import _mean_ci

    return list(_mean_ci(values, seed)[1:3])


def pointing(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for dataset, window in (("phantom-binary-32", 4), ("phantom-binary-64", 6)):
        encoders = {"random init": models.create("small-cnn").eval(), "task-trained": _trained(dataset, 3000, 10)}
        test = data.load(dataset, "test", n=400)
        index = np.flatnonzero(test.labels == 1)[:args.images]
        area = sal.region_of_interest(test, index).reshape(len(index), -1).mean(axis=1)
        for init, model in encoders.items():
            t = time.perf_counter()
            r = sal.saliency(model, test, index, window=window)
            assert r.pointing is not None
            rows.append({"dataset": dataset, "encoder": "small-cnn", "init": init, "images": len(index),
                         "window": window, "pointing": float(np.nanmean(r.pointing)), "pointing_ci": _ci(r.pointing),
                         "lesion_area": float(area.mean()), "lift": float(np.nanmean(r.pointing) / area.mean()),
                         "diffusion": float(r.diffusion.mean()), "diffusion_ci": _ci(r.diffusion),
                         "seconds": round(time.perf_counter() - t, 1)})
            print(json.dumps(rows[-1]), flush=True)
            _save("pointing", rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["speed", "stride", "invariance", "pointing"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--images", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    {"speed": speed, "stride": stride, "invariance": invariance, "pointing": pointing}[args.task](args)


if __name__ == "__main__":
    main()
