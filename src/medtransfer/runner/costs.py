"""What a grid would cost on this machine (and on its GPU, if it has one), measured, before anything runs.

`reproduce --dry-run --measure` times each architecture of the grid at its input size on this machine: a few
batches of random input through the random-init network, forward only (what extraction costs) and forward +
backward + an optimiser step (what training costs). A cell's cost is then counted from the dataset's size:

* frozen cells (linear, kNN, few-shot): their (model, dataset) pair's extraction of every split, once per pair,
  shared by its cells (the protocols themselves take seconds and are left out);
* finetune and segment: (epochs x training images, or steps x batch size) training passes plus one evaluation
  pass over val and test per epoch; early stopping can only make them shorter.

Image counts come from the cards (MedMNIST's official split sizes; the reference datasets' published counts).
The figures are estimates of compute: data loading, a cold cache and a shared machine add to them. Nothing is
measured on a GPU that is not there: without CUDA the GPU figures are None.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from medtransfer.runner.pretraining import step_of
from medtransfer.runner.spec import GridSpec
from medtransfer.runner.store import Cell

TRAINED = ("finetune", "segment")


def _batch(size: int, dims: int) -> int:
    """A batch that keeps per-call overhead out of the figure without exhausting memory."""
    if dims == 3:
        return 4 if size > 32 else 16
    return 128 if size <= 64 else 16


@dataclass(frozen=True)
class Throughput:
    """Images (volumes) per second of one architecture at one input size on one device."""

    arch: str
    size: int
    dims: int
    device: str
    infer: float
    train: float


def architecture(spec: GridSpec, model: str) -> tuple[str, int | None, int]:
    """(architecture, input size or None for the dataset's own, dims) of a grid model, without its weights."""
    from medtransfer.models import MODELS

    step = step_of(spec, model)
    name = str(step.get("model") or "resnet18") if step is not None else model
    if name in MODELS:
        card = MODELS.get(name)
        return card.arch, card.input.input_size, card.dims
    return name, None, 2


def dataset_images(name: str) -> dict[str, int] | None:
    """Images per split from the card (MedMNIST's `n_samples`), or the published total as 'all'; None if unknown."""
    from medtransfer.data import get_card

    card = get_card(name)
    if "n_samples" in card.extra:
        return dict(card.extra["n_samples"])
    counts = card.extra.get("published_counts")
    return {"all": int(sum(counts.values()))} if counts else None


def measure(arch: str, size: int, dims: int, device: str, *, seconds: float = 1.5) -> Throughput:
    """Time `arch` (random init) on random input of `size` on `device`: forward, and forward + backward + step."""
    import torch

    from medtransfer.models import create

    model = create(arch, pretrained=False).to(device)
    batch = _batch(size, dims)
    x = torch.randn((batch, model.card.input.in_chans, *([size] * dims)), device=device)
    if dims == 2:
        x = x.contiguous(memory_format=torch.channels_last)
        model = model.to(memory_format=torch.channels_last)

    def rate(step: Any) -> float:
        step()  # warm-up (kernel selection, allocator)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or n < 2:
            step()
            n += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return n * batch / (time.perf_counter() - start)

    model.eval()

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    infer = rate(forward)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        model(x).float().mean().backward()
        opt.step()

    train = rate(train_step)
    return Throughput(arch, size, dims, device, infer, train)


def _size(spec: GridSpec, model: str, dataset: str) -> tuple[str, int, int]:
    from medtransfer.data import get_card

    arch, size, dims = architecture(spec, model)
    return arch, int(spec.input_size or size or get_card(dataset).image_size or 224), dims


def cell_seconds(cells: Iterable[Cell], spec: GridSpec, rates: dict[tuple[str, int, int], Throughput]
                 ) -> float | None:
    """Estimated compute seconds of `cells` (one spec's) at the measured `rates`; None if a size is unknown."""
    total, pairs = 0.0, set()
    for cell in cells:
        images = dataset_images(cell.dataset)
        if images is None:
            return None
        rate = rates[_size(spec, cell.model, cell.dataset)]
        n_all = sum(images.values())
        if cell.protocol not in TRAINED:
            if (cell.model, cell.dataset) not in pairs:  # extraction once per pair, every split
                pairs.add((cell.model, cell.dataset))
                total += n_all / rate.infer
            continue
        n_train = images.get("train", round(0.7 * n_all)) * (cell.fraction or 1.0)
        n_eval = n_all - images.get("train", round(0.7 * n_all))
        epochs, steps, batch = _length(cell.protocol, cell.config.get("protocol_options", {}), cell.dataset)
        passes = steps * batch if steps else epochs * n_train
        evals = (steps * batch / max(n_train, 1) if steps else epochs) * n_eval
        total += passes / rate.train + evals / rate.infer
    return total


def _length(protocol: str, options: dict[str, Any], dataset: str) -> tuple[int, int | None, int]:
    """(epochs, steps, batch size) of a trained cell: its options over its preset's."""
    opts = dict(options)
    if protocol == "finetune":
        from medtransfer.protocols._finetune_config import resolve_config

        cfg: Any = resolve_config(opts.pop("preset", "medmnist"), **opts)
    else:
        from medtransfer.protocols._seg_config import resolve_config as resolve_segment

        cfg = resolve_segment(opts.pop("preset", "default"), dataset=dataset, **opts)
    return int(cfg.epochs or 0), cfg.steps, int(cfg.batch_size)


def needed(specs: Iterable[GridSpec]) -> set[tuple[str, int, int]]:
    """The (architecture, input size, dims) every cell of `specs` runs at."""
    return {_size(spec, m, d) for spec in specs for m in spec.models for d in spec.datasets}


def study_costs(parts: Iterable[tuple[str, GridSpec, list[Cell]]], *, seconds: float = 1.5,
                devices: Iterable[str] | None = None) -> dict[str, Any]:
    """Measure every architecture the parts need on each device (this CPU, and CUDA when there is one), then
    each part's estimated compute hours per device: ``{"rates": [...], "parts": [{"part", "cpu_h", "cuda_h"}]}``."""
    import torch

    parts = list(parts)
    devices = list(devices) if devices is not None else ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    shapes = sorted(needed(spec for _, spec, _ in parts))
    rates = {d: {shape: measure(*shape, d, seconds=seconds) for shape in shapes} for d in devices}
    out_parts = []
    for label, spec, cells in parts:
        row: dict[str, Any] = {"part": label, "cells": len(cells)}
        for d in ("cpu", "cuda"):
            secs = cell_seconds(cells, spec, rates[d]) if d in rates else None
            row[f"{d}_h"] = None if secs is None else round(secs / 3600, 2)
        out_parts.append(row)
    return {"rates": [vars(r) for d in rates for r in rates[d].values()], "parts": out_parts,
            "devices": devices}
