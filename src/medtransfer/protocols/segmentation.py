"""Segmentation transfer: any medtransfer backbone as the encoder of a U-Net, trained on images and masks.

The encoder starts from the backbone's weights (a zoo checkpoint, a model folder, pretraining here, random
init) and is trained or kept frozen; the decoder is fresh. Presets follow the reference studies
(PROTOCOLS.md §3 and §4):

- ``default``: Adam 1e-3, batch 8, 50 epochs, Dice + BCE, the stored image size, flips; the lowest validation
  loss is kept, patience 10 epochs.
- ``hosseinzadeh2021`` (main_segmentation.py): Adam 1e-3 with a cosine schedule, batch 32, up to 200 epochs,
  patience 20, the best-validation-loss weights, sigmoid outputs, Dice loss at 224 px, the reference's
  augmentations; on DRIVE, BCE at 512 px as the reference trains it.
- ``taleb2020`` (3D finetuning): weighted Dice, Adam 1e-3, batch 2, warm-up epochs with the encoder frozen,
  then the whole network; flips.

Batches are a function of (seed, step) and the loop is Lightning's with ``last.ckpt`` checkpoints, so a killed
run resumes to the same weights (as `finetune`). Scores are Dice and IoU of the test masks at their stored
size, inside the field of view where the dataset has one (`seg_metrics`), with bootstrap intervals over images.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from medtransfer._lightning import ProgressLog, fit_resumable
from medtransfer.config import config_hash
from medtransfer.data.base import ArrayDataset, ImageDataset
from medtransfer.data.segmentation import check_values
from medtransfer.errors import ConfigError, DataError
from medtransfer.features import default_device, volume_batch_size
from medtransfer.models.factory import build, card_of
from medtransfer.protocols._finetune_data import StepBatches, holdout
from medtransfer.protocols._seg_config import (  # noqa: F401  (the public names of segmentation settings)
    DATASET_PRESETS,
    LOSSES,
    PRESETS,
    SegmentConfig,
    resolve_config,
)
from medtransfer.protocols._seg_module import SegmentModule, probabilities
from medtransfer.protocols._unet import build_unet
from medtransfer.protocols.base import ClassificationResult
from medtransfer.protocols.seg_metrics import confusion_counts, summarise

_PRELOAD_BYTES = 2 * 2**30  # the resized training set is held in memory as uint8 up to this size


# ---------------------------------------------------------------- data


def _resize(x: torch.Tensor, size: tuple[int, ...], *, mask: bool) -> torch.Tensor:
    """(B, C, ...) to `size`: nearest for masks, bilinear/trilinear (antialiased in 2D) for images."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    if mask:
        return F.interpolate(x.float(), size=size, mode="nearest").to(x.dtype)
    mode = "bilinear" if x.dim() == 4 else "trilinear"
    return F.interpolate(x.float(), size=size, mode=mode, align_corners=False, antialias=x.dim() == 4)


def _as_list(a: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
    return list(a) if isinstance(a, np.ndarray) else a


def _resized_pairs(ds: ImageDataset, index: np.ndarray, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (B, *S, C) and uint8 masks (B, *S) of `index`, each resized to `size` (None: as stored)."""
    images, masks = ds.pairs(index)
    out_x, out_y = [], []
    for im, m in zip(_as_list(images), _as_list(masks), strict=True):
        target = m.shape if size is None else (size,) * m.ndim
        x = torch.from_numpy(np.ascontiguousarray(im)).movedim(-1, 0)[None]  # (1, C, ...)
        out_x.append(_resize(x, target, mask=False).round().clamp(0, 255).to(torch.uint8)[0].movedim(0, -1).numpy())
        y = torch.from_numpy(np.asarray(m).astype(np.uint8))[None, None]  # classes < 256 (the card has them)
        out_y.append(_resize(y, target, mask=True)[0, 0].numpy())
    _same_size(ds, [a.shape for a in out_x])
    return np.stack(out_x), np.stack(out_y)


def _same_size(ds: ImageDataset, shapes: list[tuple[int, ...]]) -> None:
    if len(set(shapes)) > 1:
        raise DataError(f"The images of {ds.card.name!r} differ in size ({sorted(set(shapes))[:3]} ...); segmentation "
                        "training needs one size. Pass size=<pixels> (e.g. size=224) to resize them.")


def preload(ds: ImageDataset, size: int | None) -> ArrayDataset:
    """The split resized to `size` in memory (uint8 images and masks): decoded once, not at every step.

    The memory it needs is estimated from the first image before anything else is decoded, so a split too large
    for memory (SIIM at its stored 1024 px) is refused at once, with the option that fixes it.
    """
    n = len(ds)
    if n == 0:
        raise DataError(f"The {ds.split!r} split of {ds.card.name!r} is empty; segmentation needs images in it (a "
                        "folder of fewer than 3 images gets empty val/test splits: add images or split folders).")
    first_x, first_y = _resized_pairs(ds, np.arange(1), size)
    per_image = first_x[0].nbytes + first_y[0].nbytes
    if n * per_image > _PRELOAD_BYTES:
        at = "its stored size" if size is None else f"{size} px"
        raise DataError(f"The {ds.split!r} split of {ds.card.name!r} at {at} needs about "
                        f"{n * per_image / 2**30:.1f} GiB in memory; pass a smaller size= (e.g. size=256).")
    chunk = max(1, (64 * 2**20) // per_image)  # decode about 64 MiB at a time
    parts = [(first_x, first_y), *(_resized_pairs(ds, np.arange(s, min(s + chunk, n)), size)
                                   for s in range(1, n, chunk))]
    _same_size(ds, [p[0].shape[1:] for p in parts])
    images, masks = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return ArrayDataset(ds.card, ds.split, images, np.zeros(n, np.int64), fingerprint=f"{ds.fingerprint}:{size}",
                        masks=masks)


class SegStepBatches(StepBatches):
    """`StepBatches` of a preloaded split, with the masks as targets: the batch of step s is a function of
    (seed, s) alone, so a resumed run trains on exactly the batches an uninterrupted one does."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # type: ignore[override]
        for step in range(self.start_step(), self.total_steps):
            index = self.step_index(step)
            images, masks = self.ds.pairs(index)
            yield torch.from_numpy(np.asarray(images)), torch.from_numpy(np.asarray(masks)).long()


@dataclass
class _ValBatches(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    ds: ArrayDataset
    batch_size: int

    def __post_init__(self) -> None:
        super().__init__()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for s in range(0, len(self.ds), self.batch_size):
            images, masks = self.ds.pairs(np.arange(s, min(s + self.batch_size, len(self.ds))))
            yield torch.from_numpy(np.asarray(images)), torch.from_numpy(np.asarray(masks)).long()


# ---------------------------------------------------------------- the estimator


class Segmenter:
    """Train a U-Net on a backbone (sklearn style: `fit` returns self, learned state ends in ``_``).

    Args:
        preset: ``default``, ``hosseinzadeh2021`` or ``taleb2020``; `overrides` change any `SegmentConfig` field.
        seed: decoder weights, batch order, augmentation (and the backbone with ``init="scratch"``).
        checkpoint_dir: where ``last.ckpt`` is kept while training; found there after a kill, training resumes.
        device: CUDA when available, else the CPU.
        progress: a progress bar (default: when stderr is a terminal); progress lines go to the log either way.

    Attributes:
        module_: the trained `SegmentModule`, holding the selected weights.
        chosen_: preset, init, encoder, size, loss, steps, the best step and its validation loss.
        history_: one ``{"step", "val_loss"}`` entry per validation.
    """

    def __init__(self, preset: str = "default", *, seed: int = 0, checkpoint_dir: str | Path | None = None,
                 device: str | torch.device | None = None, progress: bool | None = None,
                 callbacks: Sequence[pl.Callback] = (), **overrides: Any) -> None:
        self.preset, self.seed, self.checkpoint_dir = preset, seed, checkpoint_dir
        self.device, self.progress, self.callbacks, self.overrides = device, progress, tuple(callbacks), overrides
        self.cfg = resolve_config(preset, **overrides)

    def fit(self, model: nn.Module, train: ImageDataset, val: ImageDataset | None = None) -> Segmenter:
        """Train a copy of `model`'s weights in a U-Net on `train`, selecting on `val` (a hold-out when None)."""
        card = train.card
        if card.task != "segmentation":
            raise DataError(f"{card.name!r} is a {card.task} dataset without segmentation masks; segment needs a "
                            "segmentation dataset (drive, phantom-seg-organs, a folder of images/ and masks/ ...).")
        mcard = card_of(model)
        if mcard.dims != card.dims:
            raise ConfigError(f"{mcard.name!r} is a {mcard.dims}D model and {card.name!r} holds {card.dims}D "
                              f"{'volumes' if card.dims == 3 else 'images'}; use a {card.dims}D encoder.")
        self.cfg = cfg = resolve_config(self.preset, dataset=card.name, **self.overrides)
        if card.dims == 3 and cfg.augment == "hosseinzadeh2021" and cfg.size is not None:
            raise ConfigError("The hosseinzadeh2021 preset is 2D; for volumes use taleb2020 or default.")
        seed, device = self.seed, default_device(self.device)
        if val is None:
            train, val = holdout(train, cfg.holdout, seed)
        if len(train) < 2:
            raise DataError(f"Segmentation training needs at least 2 training images; {card.name!r} gives "
                            f"{len(train)} (after any label budget and validation hold-out).")
        fit_train, fit_val = preload(train, cfg.size), preload(val, cfg.size)
        # at least 2 images a step: BatchNorm cannot train on one image of a 1x1 feature map
        batch = max(2, volume_batch_size(min(cfg.batch_size, len(fit_train)), fit_train))
        batches = SegStepBatches(fit_train, batch, seed, 0)
        spe = batches.steps_per_epoch
        total = batches.total_steps = cfg.steps if cfg.steps is not None else cfg.epochs * spe  # type: ignore[operator]
        backbone = copy.deepcopy(model).train()
        if cfg.init == "scratch":
            backbone.load_state_dict(build(mcard.arch, mcard.input.in_chans, seed=seed).state_dict())
        n_classes = card.num_classes
        run_key = config_hash({"cfg": dataclasses.asdict(cfg), "seed": seed, "model": mcard.name,
                               "n_train": len(fit_train), "n_val": len(fit_val), "dataset": card.name})
        with torch.random.fork_rng(devices=[]):
            pl.seed_everything(seed, workers=False, verbose=False)
            net = build_unet(backbone, 1 if n_classes == 2 else n_classes, use_smp=cfg.use_smp)
            self.module_ = SegmentModule(net, cfg, contract=mcard.input, seed=seed, total_steps=total,
                                         warmup_steps=cfg.warmup_epochs * spe, run_key=run_key)
            fit_resumable(self.module_, batches, _ValBatches(fit_val, batch),
                          val_every=min(cfg.val_every or spe, total),
                          ckpt_dir=Path(self.checkpoint_dir) if self.checkpoint_dir is not None else None,
                          device=device, bf16=cfg.bf16, deterministic=cfg.deterministic,
                          progress=sys.stderr.isatty() if self.progress is None else self.progress,
                          callbacks=(*self.callbacks, ProgressLog(f"segment {mcard.name} / {card.name}")))
        m = self.module_
        m.restore_best()  # selection is over: only from here on may a test split be read
        self.chosen_ = {"preset": self.preset, "init": cfg.init, "encoder": cfg.encoder, "size": cfg.size,
                        "loss": cfg.loss, "unet": type(net).__name__, "steps": total, "stopped_step": m.global_step,
                        "best_step": m.best_step_ if m.best_state_ is not None else None,
                        "best_epoch": m.best_step_ // spe if m.best_state_ is not None else None,
                        "val_loss": m.best_score_ if m.best_state_ is not None else None}
        self.history_, self.n_train_ = m.history_, len(fit_train)
        return self

    def predict(self, ds: ImageDataset, index: np.ndarray | None = None) -> list[np.ndarray]:
        """Predicted masks (integer classes) of `ds` at `index` (all when None), each at its stored size."""
        if not hasattr(self, "module_"):
            raise ConfigError("This Segmenter is not fitted yet. Call fit(model, train, val) first.")
        index = np.arange(len(ds)) if index is None else np.asarray(index)
        return [pred for pred, _ in self._predictions(ds, index)]

    def _predictions(self, ds: ImageDataset, index: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(predicted mask, true mask) of each row of `index`, at the stored size; each file is read once."""
        module, device = self.module_, default_device(self.device)
        module.to(device).eval()
        step = max(1, volume_batch_size(self.cfg.batch_size, ds))
        with torch.inference_mode():
            for s in range(0, len(index), step):
                images, masks = ds.pairs(index[s:s + step])
                truths = _as_list(masks)
                side = self.cfg.size
                x = torch.cat([_resize(torch.from_numpy(np.ascontiguousarray(im)).movedim(-1, 0)[None].float(),
                                       t.shape if side is None else (side,) * t.ndim, mask=False)
                               for im, t in zip(_as_list(images), truths, strict=True)])
                logits = module(module.prepare(x.round().clamp(0, 255).to(torch.uint8).movedim(1, -1).to(device)))
                for i, truth in enumerate(truths):
                    full = _resize(logits[i:i + 1].float(), truth.shape, mask=False)  # logits to the stored size
                    yield probabilities(full)[0].argmax(0).cpu().numpy(), np.asarray(truth)

    def score(self, test: ImageDataset) -> ClassificationResult:
        """Dice and IoU (mean and per class) of the selected weights on `test`, with bootstrap intervals."""
        if len(test) == 0:
            raise DataError(f"The test split of {test.card.name!r} is empty: nothing to score.")
        n_classes, rows = test.card.num_classes, np.arange(len(test))
        fov = test.fov(rows)
        valid = [None] * len(test) if fov is None else [np.asarray(v, bool) for v in _as_list(fov)]
        counts = [confusion_counts(pred, check_values(truth, n_classes, f"{i} of {test.card.name!r}"), n_classes,
                                   valid[i])
                  for i, (pred, truth) in enumerate(self._predictions(test, rows))]
        scores = summarise(np.stack(counts), test.card.label_names, n_boot=self.cfg.n_boot, seed=self.seed)
        return ClassificationResult(protocol="segment", metrics={k: v[0] for k, v in scores.items()},
                                    ci={k: (v[1], v[2]) for k, v in scores.items()}, chosen=dict(self.chosen_),
                                    grid=list(self.history_), n_train=self.n_train_, n_test=len(test),
                                    seed=self.seed, config=dataclasses.asdict(self.cfg))


def segment(model: nn.Module, train: ImageDataset, val: ImageDataset | None, test: ImageDataset, *,
            preset: str = "default", seed: int = 0, **kwargs: Any) -> ClassificationResult:
    """Train a U-Net with `model` as its encoder on `train`, select on `val`, score Dice/IoU on `test`.

    `kwargs` are `Segmenter` arguments (checkpoint_dir, device, progress, callbacks) and `SegmentConfig`
    overrides (``encoder="frozen"``, ``epochs=20``, ``loss="dice"`` ...).

    Examples:
        >>> net = models.create("resnet18-small")  # doctest: +SKIP
        >>> splits = [data.load("phantom-seg-organs-32", s) for s in ("train", "val", "test")]  # doctest: +SKIP
        >>> segment(net, *splits, epochs=5).metrics["dice"]  # doctest: +SKIP
    """
    return Segmenter(preset, seed=seed, **kwargs).fit(model, train, val).score(test)
