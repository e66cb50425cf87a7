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
from medtransfer.config import config_hash, from_dict
from medtransfer.data.base import ArrayDataset, ImageDataset
from medtransfer.errors import ConfigError, DataError
from medtransfer.features import default_device, volume_batch_size
from medtransfer.models.factory import build, card_of
from medtransfer.protocols._finetune_data import StepBatches, holdout
from medtransfer.protocols._seg_augment import SEG_AUGMENTATIONS
from medtransfer.protocols._seg_module import SegmentModule, probabilities
from medtransfer.protocols._unet import build_unet
from medtransfer.protocols.base import ClassificationResult
from medtransfer.protocols.seg_metrics import confusion_counts, summarise
from medtransfer.registry import did_you_mean

LOSSES = ("dice", "bce", "dice_bce", "weighted_dice")
_PRELOAD_BYTES = 2 * 2**30  # the resized training set is held in memory as uint8 up to this size


@dataclass(frozen=True)
class SegmentConfig:
    """Everything a segmentation run does. Start from a preset (`PRESETS`) and override fields by name.

    Attributes:
        size: the side images and masks are resized to for training and prediction (None: as stored; all images
            must then share one size). Scores are always computed at the stored size.
        loss: ``dice``, ``bce``, ``dice_bce`` or ``weighted_dice`` (see `_seg_module.segmentation_loss`).
        encoder: ``trained`` (finetuned with the decoder) or ``frozen`` (its weights and BN statistics fixed).
        warmup_epochs: epochs at the start with the encoder frozen (Taleb et al.), then it trains.
        epochs, steps: the length of training; exactly one is set.
        schedule: ``cosine`` (per step, to 0) or ``constant``.
        patience: stop after this many validations without a lower validation loss (None: never).
        val_every: validate every this many steps (None: once per epoch); the weights with the lowest
            validation loss are the ones scored.
        holdout: share of train held out for validation when no val split is given.
        augment: ``none``, ``flip`` or ``hosseinzadeh2021`` (`_seg_augment`).
        init: ``pretrained`` (the backbone as given) or ``scratch`` (its architecture re-initialised from seed).
        use_smp: segmentation-models-pytorch's U-Net for resnet18/resnet50/densenet121 (else ours everywhere).
    """

    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 8
    epochs: int | None = 50
    steps: int | None = None
    schedule: str = "constant"
    size: int | None = None
    loss: str = "dice_bce"
    encoder: str = "trained"
    warmup_epochs: int = 0
    patience: int | None = 10
    val_every: int | None = None
    holdout: float = 0.2
    augment: str = "flip"
    init: str = "pretrained"
    use_smp: bool = True
    bf16: bool = False
    deterministic: bool = True
    n_boot: int = 1000

    def __post_init__(self) -> None:
        choices = {"schedule": ("cosine", "constant"), "loss": LOSSES, "encoder": ("trained", "frozen"),
                   "augment": SEG_AUGMENTATIONS, "init": ("pretrained", "scratch")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                value = getattr(self, name)
                raise ConfigError(f"The {name!r} parameter of SegmentConfig must be one of {list(allowed)}. "
                                  f"Got {value!r} instead.{did_you_mean(str(value), list(allowed))}")
        if (self.epochs is None) == (self.steps is None):
            raise ConfigError(f"SegmentConfig needs exactly one of 'epochs' and 'steps'. Got "
                              f"epochs={self.epochs!r}, steps={self.steps!r}.")
        for name in ("batch_size", "epochs", "steps", "patience", "val_every", "size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"The {name!r} parameter of SegmentConfig must be an int in the range [1, inf). "
                                  f"Got {value!r} instead.")
        if not 0.0 < self.holdout < 1.0 or self.lr <= 0.0 or self.warmup_epochs < 0:
            raise ConfigError(f"SegmentConfig needs 0 < holdout < 1, lr > 0 and warmup_epochs >= 0. Got holdout="
                              f"{self.holdout!r}, lr={self.lr!r}, warmup_epochs={self.warmup_epochs!r}.")


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "hosseinzadeh2021": {"batch_size": 32, "epochs": 200, "schedule": "cosine", "patience": 20, "size": 224,
                         "loss": "dice", "augment": "hosseinzadeh2021"},
    "taleb2020": {"batch_size": 2, "epochs": 400, "warmup_epochs": 25, "loss": "weighted_dice", "patience": None},
}
# Hosseinzadeh Taher et al. train DRIVE with BCE at 512 px (Montgomery and SIIM with Dice at 224)
DATASET_PRESETS: dict[tuple[str, str], dict[str, Any]] = {("hosseinzadeh2021", "drive"): {"size": 512, "loss": "bce"}}


def resolve_config(preset: str = "default", *, dataset: str | None = None, **overrides: Any) -> SegmentConfig:
    """A preset (with its dataset-specific values for `dataset`) and `overrides`, strict keys."""
    if preset not in PRESETS:
        raise ConfigError(f"Unknown segment preset {preset!r}.{did_you_mean(preset, list(PRESETS))} "
                          f"Allowed presets: {', '.join(PRESETS)}.")
    values = dict(PRESETS[preset]) | DATASET_PRESETS.get((preset, dataset or ""), {})
    if "epochs" in overrides and "steps" not in overrides:
        values["steps"] = None
    if "steps" in overrides and "epochs" not in overrides:
        values["epochs"] = None
    return from_dict(SegmentConfig, values | overrides, where=f"segment options (preset {preset!r})")


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
    """uint8 images (B, *S, C) and int64 masks (B, *S) of `index`, each resized to `size` (None: as stored)."""
    images, masks = ds.pairs(index)
    out_x, out_y = [], []
    for im, m in zip(_as_list(images), _as_list(masks), strict=True):
        target = m.shape if size is None else (size,) * m.ndim
        x = torch.from_numpy(np.ascontiguousarray(im)).movedim(-1, 0)[None]  # (1, C, ...)
        out_x.append(_resize(x, target, mask=False).round().clamp(0, 255).to(torch.uint8)[0].movedim(0, -1).numpy())
        out_y.append(_resize(torch.from_numpy(np.asarray(m, np.int64))[None, None], target, mask=True)[0, 0].numpy())
    if len({a.shape for a in out_x}) > 1:
        raise DataError(f"The images of {ds.card.name!r} differ in size; segmentation training needs one size. Pass "
                        "size=<pixels> (e.g. size=224) to resize them.")
    return np.stack(out_x), np.stack(out_y)


def preload(ds: ImageDataset, size: int | None, *, chunk: int = 32) -> ArrayDataset:
    """The split resized to `size` in memory (images uint8, masks int64): decoded once, not at every step."""
    n = len(ds)
    parts = [_resized_pairs(ds, np.arange(s, min(s + chunk, n)), size) for s in range(0, n, chunk)]
    images, masks = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    if images.nbytes > _PRELOAD_BYTES:
        raise DataError(f"{ds.card.name!r} at size {size} needs {images.nbytes / 2**30:.1f} GiB in memory; pass a "
                        "smaller size=.")
    return ArrayDataset(ds.card, ds.split, images, np.zeros(n, np.int64), fingerprint=ds.fingerprint + f":{size}",
                        masks=masks)


class SegStepBatches(StepBatches):
    """`StepBatches` of a preloaded split, with the masks as targets: the batch of step s is a function of
    (seed, s) alone, so a resumed run trains on exactly the batches an uninterrupted one does."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # type: ignore[override]
        for step in range(self.start_step(), self.total_steps):
            index = self.step_index(step)
            images, masks = self.ds.pairs(index)
            yield torch.from_numpy(np.asarray(images)), torch.from_numpy(np.asarray(masks))


@dataclass
class _ValBatches(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    ds: ArrayDataset
    batch_size: int

    def __post_init__(self) -> None:
        super().__init__()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for s in range(0, len(self.ds), self.batch_size):
            images, masks = self.ds.pairs(np.arange(s, min(s + self.batch_size, len(self.ds))))
            yield torch.from_numpy(np.asarray(images)), torch.from_numpy(np.asarray(masks))


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
        fit_train, fit_val = preload(train, cfg.size), preload(val, cfg.size)
        batch = volume_batch_size(min(cfg.batch_size, len(fit_train)), fit_train)
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
        return [p for _, p in self._predictions(ds, index)]

    def _predictions(self, ds: ImageDataset, index: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        module, device = self.module_, default_device(self.device)
        module.to(device).eval()
        step = volume_batch_size(max(1, self.cfg.batch_size), ds)
        with torch.inference_mode():
            for s in range(0, len(index), step):
                rows = index[s:s + step]
                images, _ = _resized_pairs(ds, rows, self.cfg.size)
                stored = [m.shape for m in _as_list(ds.masks(rows))]
                logits = module(module.prepare(torch.from_numpy(images).to(device)))
                for i, (row, shape) in enumerate(zip(rows, stored, strict=True)):
                    full = _resize(logits[i:i + 1].float(), shape, mask=False)  # logits to the stored size
                    yield int(row), probabilities(full)[0].argmax(0).cpu().numpy()

    def score(self, test: ImageDataset) -> ClassificationResult:
        """Dice and IoU (mean and per class) of the selected weights on `test`, with bootstrap intervals."""
        counts = []
        for row, pred in self._predictions(test, np.arange(len(test))):
            truth = np.asarray(_as_list(test.masks(np.array([row])))[0])
            fov = test.fov(np.array([row]))
            valid = None if fov is None else np.asarray(_as_list(fov)[0], bool)
            counts.append(confusion_counts(pred, truth, test.card.num_classes, valid))
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
