"""What mixed precision, channels-last-3d and torch.compile give MedMNIST v2's ResNet-18+3D training (issue #17).

The training step of the `medmnist3d` preset (`resnet18-3d-small` from scratch, batch 32, Adam 1e-3,
cross-entropy) on real AdrenalMNIST3D volumes, in plain PyTorch, in each variant: fp32; bf16 autocast;
channels-last-3d (NDHWC) in fp32 and with bf16; and `torch.compile` of the fastest eager variant (its compile
time reported apart). Each variant trains its own fresh network: one warm-up step, then `--steps` timed steps;
volumes/s is the timed steps' rate (the best of `--repeats` interleaved runs, each run listed).
Writes benchmarks/out/train_3d.json.

    .venv/bin/python benchmarks/train_3d.py                       # AdrenalMNIST3D 28, 2 timed steps per variant
    .venv/bin/python benchmarks/train_3d.py --device cuda --steps 20
    .venv/bin/python benchmarks/train_3d.py --no-bf16            # on an AVX2-only CPU (bf16 emulated there)
    .venv/bin/python benchmarks/train_3d.py --no-bf16 --no-compile --steps 3 --repeats 2   # layouts, interleaved
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
from medtransfer.data.transforms import to_tensor

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist"
OUT = Path(__file__).resolve().parent / "out" / "train_3d.json"


def _step_fn(model: torch.nn.Module, opt: torch.optim.Optimizer, *, bf16: bool, device: str) -> Any:
    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def run_variant(x_all: torch.Tensor, y_all: torch.Tensor, classes: int, *, bf16: bool, channels_last: bool,
                compile_: bool, steps: int, batch: int, device: str) -> dict[str, Any]:
    torch.manual_seed(0)
    net = models.create("resnet18-3d-small", pretrained=False)
    model = torch.nn.Sequential(net, torch.nn.Linear(net.card.feature_dim, classes)).to(device).train()
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = _step_fn(torch.compile(model) if compile_ else model, opt, bf16=bf16, device=device)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(len(y_all), (batch,), generator=g) for _ in range(steps + 1)]

    def one(idx: torch.Tensor) -> None:
        step(x_all[idx].to(device).contiguous(memory_format=fmt), y_all[idx].to(device))

    t0 = time.perf_counter()
    one(batches[0])  # warm-up: oneDNN primitives, and the compilation for compile_
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for idx in batches[1:]:
        one(idx)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"bf16": bf16, "channels_last_3d": channels_last, "compile": compile_, "warmup_s": round(warm, 2),
            "seconds": round(seconds, 2), "volumes_per_s": round(steps * batch / seconds, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="adrenalmnist3d")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--repeats", type=int, default=1, help="runs of each eager variant, interleaved; the best is kept")
    p.add_argument("--no-bf16", action="store_true", help="fp32 variants only (bf16 is emulated, and very slow, on "
                   "CPUs without AVX512-BF16 / AMX)")
    a = p.parse_args()
    train = data.load(a.dataset, "train", data_root=DATA)
    x_all = to_tensor(train.images(np.arange(len(train))))  # (N, 1, 28, 28, 28) in [0, 1]
    y_all = torch.as_tensor(np.asarray(train.labels).reshape(-1), dtype=torch.long)
    eager = [dict(bf16=b, channels_last=c) for c in (False, True) for b in ((False,) if a.no_bf16 else (False, True))]
    runs: list[list[dict[str, Any]]] = [[] for _ in eager]
    for _ in range(a.repeats):  # interleaved: a drift of a shared machine hits every variant alike
        for variant_runs, v in zip(runs, eager, strict=True):
            variant_runs.append(run_variant(x_all, y_all, train.card.num_classes, compile_=False, steps=a.steps,
                                            batch=a.batch, device=a.device, **v))
            print(variant_runs[-1], flush=True)
    rows = [{**max(r, key=lambda x: x["volumes_per_s"]), "volumes_per_s_runs": [x["volumes_per_s"] for x in r]}
            for r in runs]
    if not a.no_compile:
        best = max(rows, key=lambda r: r["volumes_per_s"])
        rows.append(run_variant(x_all, y_all, train.card.num_classes, bf16=best["bf16"],
                                channels_last=best["channels_last_3d"], compile_=True, steps=a.steps,
                                batch=a.batch, device=a.device))
        print(rows[-1], flush=True)
    base = rows[0]["volumes_per_s"]
    for r in rows:
        r["speedup"] = round(r["volumes_per_s"] / base, 2)
        r["hours_100_epochs"] = round(100 * len(train) / r["volumes_per_s"] / 3600, 1)
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "threads": torch.get_num_threads(), "device": a.device},
           "dataset": a.dataset, "batch": a.batch, "steps": a.steps, "repeats": a.repeats, "variants": rows}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
