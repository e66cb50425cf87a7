"""Batched feature extraction, cached on disk: where models and data meet.

The cache key is (weights hash, dataset fingerprint, split, preprocessing, precision); a second request for the
same key reads the memory-mapped cache instead of running the model. Features are written to disk batch by batch,
so a dataset larger than memory streams through with bounded peak memory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medtransfer._progress import Ticker
from medtransfer.config import DEVICE_ENV, config_hash, home
from medtransfer.data.base import ImageDataset
from medtransfer.data.transforms import preprocess
from medtransfer.errors import ConfigError, DataError
from medtransfer.models.card import InputContract
from medtransfer.models.factory import card_of
from medtransfer.models.weights import weights_sha256

log = logging.getLogger(__name__)
FEATURES_VERSION = 1  # bump when extraction changes what a cached file holds


@dataclass(frozen=True)
class FeatureSet:
    """Features of one dataset split under one model: x (N, D) float32 (memory-mapped), y labels, provenance."""

    x: np.ndarray
    y: np.ndarray
    key: str
    meta: dict[str, Any]


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is worth it on `device`: CUDA with bf16, or a CPU with AMX tiles.

    CPUs with AVX512-BF16 but no AMX (this project's machines) run bf16 convolutions no faster than fp32
    (0.72-1.08x, docs/benchmarks.md), so there bf16 would change the features for nothing.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return device.type == "cpu" and bool(amx())


def default_device(device: str | torch.device | None = None) -> torch.device:
    """`device`, else ``$MEDTRANSFER_DEVICE`` (e.g. ``cuda:1``), else CUDA when available, else the CPU. A CUDA
    device that is not there raises `ConfigError` (instead of torch's error deep inside the first copy to it)."""
    device = device or os.environ.get(DEVICE_ENV) or None
    if not device or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        out = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"Device {device!r} is not a device torch knows ({e}). Use 'cpu', 'cuda', 'cuda:1' or "
                          f"'auto' (also in ${DEVICE_ENV}).") from None
    if out.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"Device {device!r} was asked for, but this torch ({torch.__version__}) sees no CUDA "
                              f"device. Use device 'cpu' or 'auto' (${DEVICE_ENV}=auto), or install a CUDA build of "
                              f"torch on a machine with a GPU.")
        if out.index is not None and out.index >= count:
            raise ConfigError(f"Device {device!r} was asked for, but only {count} CUDA device(s) are visible "
                              f"(cuda:0 to cuda:{count - 1}). Pick one of those, or check CUDA_VISIBLE_DEVICES.")
    return out


def use_bf16(bf16: bool | None, device: torch.device) -> bool:
    """The bf16 choice for `device`: `bf16` when given, else whether it pays there (`bf16_supported`)."""
    return bf16_supported(device) if bf16 is None else bf16


def resolve_contract(model: nn.Module, input_size: int | None = None) -> InputContract:
    """The model card's input contract, with `input_size` overridden when given."""
    contract = card_of(model).input
    return dataclasses.replace(contract, input_size=input_size) if input_size is not None else contract


def cache_meta(model: nn.Module, dataset: ImageDataset, contract: InputContract, *, bf16: bool) -> dict[str, Any]:
    """Everything that determines the features; its hash is the cache key."""
    return {
        "model": card_of(model).name,
        "weights_sha256": weights_sha256(model),
        "dataset": dataset.card.name,
        "split": dataset.split,
        "dataset_fingerprint": dataset.fingerprint,
        "preprocess": dataclasses.asdict(contract),
        "precision": "bf16" if bf16 else "fp32",
        "version": FEATURES_VERSION,
    }


def iter_batches(dataset: ImageDataset, contract: InputContract, batch_size: int, *,
                 prefetch: bool = False) -> Iterator[torch.Tensor]:
    """Decode and preprocess batches; with `prefetch`, the next one in a background thread.

    Prefetching pays when the model runs on a GPU and the CPU is idle meanwhile. On a CPU-only machine the forward
    already keeps every core busy, and a third busy thread only makes torch's worker threads wait for each other
    (on 2 cores: pipeline at 0.82 of the bare forward with prefetching, 0.96 without; docs/benchmarks.md).
    """
    kw = dataclasses.asdict(contract)

    def prepare(start: int) -> torch.Tensor:
        index = np.arange(start, min(start + batch_size, len(dataset)))
        return preprocess(dataset.images(index), **kw)

    starts = range(0, len(dataset), batch_size)
    if not prefetch:
        yield from (prepare(start) for start in starts)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(prepare, starts[0]) if len(starts) else None
        for nxt in [*starts[1:], None]:
            assert pending is not None, "a batch is always pending inside the loop"
            batch = pending.result()
            pending = pool.submit(prepare, nxt) if nxt is not None else None
            yield batch


@torch.inference_mode()
def forward_features(model: nn.Module, x: torch.Tensor, *, bf16: bool, device: torch.device) -> np.ndarray:
    """One batch through the model (channels-last, optional bf16 autocast) -> float32 numpy (B, D)."""
    fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    x = x.to(device, non_blocking=True).contiguous(memory_format=fmt)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(x)
    return out.float().cpu().numpy()


def _write_features(model: nn.Module, dataset: ImageDataset, contract: InputContract, path: Path, *,
                    batch_size: int, bf16: bool, device: torch.device, progress: bool) -> int:
    """Stream features into the .npy file at `path` (header first, then rows); returns the feature dim."""
    from rich.progress import Progress

    dim = card_of(model).feature_dim
    label = f"features {card_of(model).name} / {dataset.card.name}:{dataset.split}"
    ticker = Ticker(label, len(dataset))  # the lines for logs and pipes, where no bar is drawn
    with open(path, "wb") as f, Progress(disable=not progress, transient=True) as bar:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (len(dataset), dim)})
        task = bar.add_task(label, total=len(dataset))
        for x in iter_batches(dataset, contract, batch_size, prefetch=device.type == "cuda"):
            feats = forward_features(model, x, bf16=bf16, device=device)  # (B, D)
            if feats.shape[1] != dim:
                raise RuntimeError(f"Model {card_of(model).name!r} returned {feats.shape[1]}-d features; its card "
                                   f"says feature_dim={dim}.")
            f.write(np.ascontiguousarray(feats, dtype="<f4").tobytes())
            bar.advance(task, len(feats))
            ticker.advance(len(feats))
    ticker.finish()
    return dim


# Volumes per batch are capped so a batch holds at most this many voxels: 128 volumes of 28^3 fit, of 64^3 only 16
# (a 3D ResNet-18 keeps 64 fp32 channels at full resolution: ~200 MB per 64^3 volume in its first stage).
VOXELS_PER_BATCH = 2**22


def volume_batch_size(batch_size: int, dataset: ImageDataset) -> int:
    """`batch_size`, lowered for large volumes so that a batch holds at most `VOXELS_PER_BATCH` voxels."""
    side = dataset.card.image_size
    if dataset.card.dims != 3 or side is None:
        return batch_size
    return max(1, min(batch_size, VOXELS_PER_BATCH // side**3))


def extract(model: nn.Module, dataset: ImageDataset, *, batch_size: int = 128, bf16: bool | None = None,
            input_size: int | None = None, device: str | torch.device | None = None, cache: bool = True,
            force: bool = False, progress: bool = False) -> FeatureSet:
    """Features of every image of `dataset` under `model`, from the cache when present.

    Args:
        model: a model from ``medtransfer.models.create`` (it carries the input contract on its card).
        dataset: one split, from ``medtransfer.data.load``.
        bf16: bf16 autocast; None turns it on where the hardware has fast bf16 kernels.
        input_size: override the card's input size (recorded in the cache key).
        cache: read/write the on-disk cache under ``$MEDTRANSFER_HOME/features``.
        force: recompute even when cached.

    Examples:
        >>> fs = extract(create("resnet18-small"), load("phantom-binary", "test"))
        >>> fs.x.shape
        (1000, 512)
    """
    if card_of(model).dims != dataset.card.dims:
        raise DataError(f"Model {card_of(model).name!r} takes {card_of(model).dims}D images but dataset "
                        f"{dataset.card.name!r} holds {dataset.card.dims}D ones; pick a {dataset.card.dims}D model "
                        f"(`medtransfer models list`).")
    device = default_device(device)
    bf16 = use_bf16(bf16, device)
    contract = resolve_contract(model, input_size)
    batch_size = volume_batch_size(batch_size, dataset)
    meta = cache_meta(model, dataset, contract, bf16=bf16)
    key = config_hash(meta, length=24)
    folder = home() / "features" / key
    if cache and not force and (folder / "meta.json").is_file():
        log.info("feature cache hit %s", key)
        return _read(folder, key)
    fmt = torch.channels_last if card_of(model).dims == 2 else torch.channels_last_3d
    model = model.to(device).to(memory_format=fmt).eval()
    tmp = folder.with_name(f"{key}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    try:
        _write_features(model, dataset, contract, tmp / "features.npy", batch_size=batch_size, bf16=bf16,
                        device=device, progress=progress)
    except BaseException:  # an error or Ctrl-C leaves no half-written entry behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    np.save(tmp / "labels.npy", dataset.labels)
    seconds = time.perf_counter() - start
    meta |= {"n": len(dataset), "seconds": round(seconds, 3),
             "images_per_s": round(len(dataset) / max(seconds, 1e-9), 1)}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    if not cache:
        fs = FeatureSet(np.load(tmp / "features.npy"), np.load(tmp / "labels.npy"), key, meta)
        shutil.rmtree(tmp)
        return fs
    shutil.rmtree(folder, ignore_errors=True)  # a forced re-extraction replaces the old entry
    try:
        os.replace(tmp, folder)  # atomic: readers see a complete entry or none
    except OSError:  # another process wrote the same entry first: keep its (identical) features
        shutil.rmtree(tmp, ignore_errors=True)
    return _read(folder, key)


def _read(folder: Path, key: str) -> FeatureSet:
    meta = json.loads((folder / "meta.json").read_text())
    x = np.load(folder / "features.npy", mmap_mode="r")
    return FeatureSet(x, np.load(folder / "labels.npy"), key, meta)
