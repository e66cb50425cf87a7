"""Finetuning: a backbone plus a linear head trained end to end on images, with the presets of the reference studies.

Unlike the frozen protocols this one takes images, not features: it trains the model. Presets (PROTOCOLS.md):

- ``medmnist`` — MedMNIST v2 (Yang et al. 2023, ``train_and_eval_pytorch.py``): Adam 1e-3, batch 128, 100 epochs,
  learning rate x0.1 at 50% and 75% of training, no augmentation; the epoch with the best validation AUC is kept.
- ``medmnist3d`` — the same for MedMNIST v2's 3D benchmark (``MedMNIST3D/train_and_eval_pytorch.py``): batch 32.
  The best validation epoch is kept, as the current script does (an earlier version, MedMNIST/experiments@11409d8,
  kept a reference to the live model as its "best" one and so scored the last epoch).
- ``anton2022`` — Anton et al. 2022 (§1.7): SGD Nesterov 0.9, lr 1e-2, wd 1e-8, batch 64, 5000 steps, cosine decay
  per step, RandomResizedCrop + flip. ``early_stopping=true`` validates every 200 steps on a stratified 80/20 split
  of train, stops after 3 evaluations without improvement and restores the best weights (really: a deep copy).
- ``taleb2020`` — Taleb et al. 2020 (§4): Adam 5e-5, batch 32, 20 epochs of which the first 3 train the head with
  the encoder frozen; zoom + flips; ordinal tasks use the cumulative (BCE) encoding.
- ``hosseinzadeh2021`` — Hosseinzadeh Taher et al. 2021 (§3): Adam 2e-4, batch 32, a N(0, 0.01) head,
  RandomResizedCrop + flip + rotation within 7 degrees, ReduceLROnPlateau (x0.5) and early stopping on the val loss,
  the lowest-val-loss weights kept, TenCrop averaging at test.

Model selection only ever sees the validation split (the SimCLR-MedMNIST reference selected on test); the test
split is read once, after training, to score the selected weights. ``init="scratch"`` runs the same protocol from
random initialisation: the supervised baseline.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from medtransfer._lightning import ProgressLog, fit_resumable
from medtransfer.config import config_hash
from medtransfer.data.base import ImageDataset
from medtransfer.errors import ConfigError, DataError
from medtransfer.features import default_device, volume_batch_size
from medtransfer.models.factory import build, card_of
from medtransfer.protocols._finetune_config import PRESETS, FinetuneConfig, resolve_config  # noqa: F401
from medtransfer.protocols._finetune_data import EvalBatches, StepBatches, holdout, labels_of
from medtransfer.protocols._finetune_module import FinetuneModule, probabilities
from medtransfer.protocols.base import ClassificationResult, default_metrics
from medtransfer.protocols.metrics import evaluate

log = logging.getLogger(__name__)


def _scratch(model: nn.Module, seed: int) -> nn.Module:
    """`model` with the weights its architecture's builder draws at `seed` (the builder's own init scheme, e.g.
    torchvision's Kaiming init for ResNets, not each layer's generic `reset_parameters`)."""
    card = card_of(model)
    fresh = build(card.arch, card.input.in_chans, seed=seed)
    model.load_state_dict(fresh.state_dict())
    return model


def _eval_batch_size(cfg: FinetuneConfig, ds: ImageDataset) -> int:
    """Larger batches than training (no activations are kept), capped for large volumes as feature extraction."""
    return volume_batch_size(max(cfg.batch_size, 256), ds)


def ten_crops(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """torchvision's TenCrop of a batch (B, C, H, W): the four corners and the centre of side `size`, then the
    same five crops of the image mirrored left-right."""
    h, w = x.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))  # torchvision's centre-crop offsets

    def five(im: torch.Tensor) -> list[torch.Tensor]:
        return [im[..., :size, :size], im[..., :size, w - size:], im[..., h - size:, :size],
                im[..., h - size:, w - size:], im[..., top:top + size, left:left + size]]

    return five(x) + five(x.flip(-1))


def _predict(module: FinetuneModule, ds: ImageDataset, cfg: FinetuneConfig, device: torch.device) -> np.ndarray:
    """Class probabilities (N, C) of a split under the module's current weights (averaged over ten crops with
    ``test_crops=10``)."""
    module.eval().to(device)
    contract, size = module.contract, None
    if cfg.test_crops == 10:
        size = contract.input_size or ds.card.image_size
        if ds.card.dims != 2 or size is None:
            raise ConfigError(f"test_crops=10 needs 2D images of a known size; {ds.card.name!r} has "
                              f"{ds.card.dims}D images of size {size}. Use test_crops=1.")
        # Resize (256 for a 224 input), then TenCrop(224): the shorter side is resized and centre-cropped square
        contract = dataclasses.replace(contract, input_size=int(round(size * 256 / 224)), crop_pct=1.0)
    out = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        for x, _ in EvalBatches(ds, contract, _eval_batch_size(cfg, ds)):
            x = x.to(device)
            views = [x] if size is None else [v.contiguous(memory_format=torch.channels_last)
                                              for v in ten_crops(x, size)]
            p = [probabilities(module(v), module.task, ordinal=module.ordinal).float() for v in views]
            out.append(torch.stack(p).mean(0).cpu())
    return torch.cat(out).double().numpy()


def _splits(train: ImageDataset, val: ImageDataset | None, cfg: FinetuneConfig,
            seed: int) -> tuple[ImageDataset, ImageDataset | None]:
    if not (cfg.select_best or cfg.early_stopping):
        return train, None  # no selection: train on everything, as Anton et al. without -e
    if cfg.val_source == "holdout" or val is None:
        train, val = holdout(train, cfg.holdout, seed)
    _check_val_classes(train, val, cfg)
    return train, val


def _check_val_classes(train: ImageDataset, val: ImageDataset, cfg: FinetuneConfig) -> None:
    """Fail before training, not at the first validation, when AUC selection cannot be computed on `val`."""
    y_train, y_val = labels_of(train), labels_of(val)
    if cfg.select_metric != "auc" or y_val.ndim != 1:
        return
    missing = sorted(set(np.unique(y_train).tolist()) - set(np.unique(y_val).tolist()))
    if missing:
        raise DataError(f"The validation data ({len(val)} images of {train.card.name!r}, "
                        f"{'a hold-out of train' if cfg.val_source == 'holdout' else 'its val split'}) has no "
                        f"image of class(es) {missing}, so the AUC that selects the epoch is undefined. Use a "
                        f"larger label budget or val split, or select_metric=accuracy.")


class Finetuner:
    """Finetune a backbone + linear head (sklearn style: `fit` returns self, learned state ends in ``_``).

    Args:
        preset: ``medmnist``, ``medmnist3d``, ``anton2022``, ``hosseinzadeh2021`` or ``taleb2020``; `overrides`
            change any `FinetuneConfig` field.
        seed: weights of the head (and of the backbone with ``init="scratch"``), batch order, augmentation.
        checkpoint_dir: where ``last.ckpt`` is kept while training; a run that finds one there (after a kill)
            resumes from it. Deleted when training finishes. None: no checkpoints.
        device: CUDA when available, else the CPU.
        progress: a progress bar with the loss and validation score (default: when stderr is a terminal).
        callbacks: extra Lightning callbacks (loggers, or a test's spy).

    Attributes:
        module_: the trained `FinetuneModule` (``backbone`` + ``head``), holding the selected weights.
        chosen_: preset, init, total / stopped / best step, best validation score, and ``best_epoch``: the
            whole epochs done at the best validation (validating at epoch ends, as MedMNIST: epoch 1, 2, ...).
        history_: one ``{"step", "val_<metric>"}`` entry per validation.
        n_train_: images trained on (after any hold-out).

    Examples:
        >>> net = models.create("resnet18-small")  # doctest: +SKIP
        >>> ft = Finetuner("medmnist", init="scratch", epochs=10).fit(net, train, val)  # doctest: +SKIP
        >>> ft.score(test).metrics  # doctest: +SKIP
    """

    def __init__(self, preset: str = "medmnist", *, seed: int = 0, checkpoint_dir: str | Path | None = None,
                 device: str | torch.device | None = None, progress: bool | None = None,
                 callbacks: Sequence[pl.Callback] = (), **overrides: Any) -> None:
        self.preset, self.seed, self.checkpoint_dir = preset, seed, checkpoint_dir
        self.device, self.progress, self.callbacks = device, progress, tuple(callbacks)
        self.cfg = resolve_config(preset, **overrides)

    def fit(self, model: nn.Module, train: ImageDataset, val: ImageDataset | None = None, *,
            task: str | None = None) -> Finetuner:
        """Train a copy of `model` (never `model` itself) on `train`, selecting on `val` only.

        Args:
            model: a backbone returning pooled (B, D) features, with a `.card` (`medtransfer.models.create`).
            train: the training split; for a label budget pass a `SubsetDataset` of it (as the runner does).
            val: the validation split; None: a stratified hold-out of train when the preset validates.
            task: the train card's task when None.
        """
        cfg, seed = self.cfg, self.seed
        if train.card.task == "segmentation" and task is None:
            raise DataError(f"{train.card.name!r} is a segmentation dataset (masks, no class labels); finetune "
                            "needs class labels. Use the segment protocol.")
        if train.card.dims == 3 and cfg.augment != "none":
            raise ConfigError(f"{train.card.name!r} holds volumes, and the {cfg.augment!r} augmentation of this "
                              f"finetune config is 2D. Use augment='none' for volumes (the medmnist preset does).")
        self.task_ = task or train.card.task
        device = default_device(self.device)
        fit_train, fit_val = _splits(train, val, cfg, seed)
        batches = StepBatches(fit_train, min(cfg.batch_size, len(fit_train)), seed, 0)
        spe = batches.steps_per_epoch
        total = batches.total_steps = cfg.steps if cfg.steps is not None else cfg.epochs * spe  # type: ignore[operator]
        net = copy.deepcopy(model).train()  # models come from `create` in eval mode, ready for extraction
        if cfg.init == "scratch":
            _scratch(net, seed)
        n_classes = train.card.num_classes
        ordinal = cfg.ordinal_encoding and self.task_ == "ordinal"
        run_key = config_hash({"cfg": dataclasses.asdict(cfg), "seed": seed, "task": self.task_,
                               "model": card_of(model).name, "n_train": len(fit_train),
                               "n_val": 0 if fit_val is None else len(fit_val)})
        with torch.random.fork_rng(devices=[]):
            pl.seed_everything(seed, workers=False, verbose=False)
            self.module_ = FinetuneModule(net, n_classes - 1 if ordinal else n_classes, cfg, task=self.task_,
                                          n_classes=n_classes, contract=card_of(model).input, seed=seed,
                                          total_steps=total, warmup_steps=cfg.warmup_epochs * spe, run_key=run_key)
            _fit(self.module_, batches, fit_val, cfg, device,
                 val_every=min(cfg.val_every or spe, total) if fit_val is not None else None,
                 ckpt_dir=Path(self.checkpoint_dir) if self.checkpoint_dir is not None else None,
                 progress=sys.stderr.isatty() if self.progress is None else self.progress,
                 callbacks=(*self.callbacks, ProgressLog(f"finetune {card_of(model).name} / {train.card.name}")))
        m = self.module_
        m.restore_best()  # model selection is over: only from here on may a test split be read
        best = m.best_step_ if m.best_state_ is not None else None
        self.chosen_ = {"preset": self.preset, "init": cfg.init, "steps": total, "stopped_step": m.global_step,
                        "best_step": best, "best_epoch": None if best is None else best // spe,
                        f"val_{cfg.select_metric}": (None if best is None else -m.best_score_
                                                     if cfg.select_metric == "loss" else m.best_score_)}
        self.history_, self.n_train_ = m.history_, len(fit_train)
        return self

    def predict_proba(self, ds: ImageDataset) -> np.ndarray:
        """Class probabilities (N, C) of every image of `ds` under the selected weights."""
        if not hasattr(self, "module_"):
            raise ConfigError("This Finetuner is not fitted yet. Call fit(model, train, val) before "
                              "predict_proba() or score().")
        return _predict(self.module_, ds, self.cfg, default_device(self.device))

    def score(self, test: ImageDataset, metrics: Sequence[str] | None = None) -> ClassificationResult:
        """The selected weights' metrics on `test`, with bootstrap intervals (the card's metrics when None)."""
        card = test.card
        metrics = tuple(metrics or (card.default_metric, *(m for m in card.metrics if m != card.default_metric)))
        proba = self.predict_proba(test)
        scores = evaluate(self.task_, test.labels, proba, metrics or default_metrics(self.task_),
                          n_boot=self.cfg.n_boot, seed=self.seed)
        return ClassificationResult(protocol="finetune", metrics={k: v[0] for k, v in scores.items()},
                                    ci={k: (v[1], v[2]) for k, v in scores.items()}, chosen=dict(self.chosen_),
                                    grid=list(self.history_), n_train=self.n_train_, n_test=len(test),
                                    seed=self.seed, config=dataclasses.asdict(self.cfg),
                                    y_true=np.asarray(test.labels), y_score=proba)


def finetune(model: nn.Module, train: ImageDataset, val: ImageDataset | None, test: ImageDataset, *,
             preset: str = "medmnist", seed: int = 0, task: str | None = None,
             metrics: Sequence[str] | None = None, **kwargs: Any) -> ClassificationResult:
    """Train `model` + a linear head on `train`, select on `val`, score the selected weights on `test`.

    `kwargs` are `Finetuner` arguments (checkpoint_dir, device, progress, callbacks) and `FinetuneConfig`
    overrides (``init="scratch"``, ``epochs=10``, ``early_stopping=True`` ...).

    Returns:
        Test metrics with bootstrap intervals; `chosen` holds the best step/epoch and validation score, `grid`
        every validation.

    Examples:
        >>> net = models.create("resnet18-small")  # doctest: +SKIP
        >>> splits = [data.load("breastmnist", s) for s in ("train", "val", "test")]  # doctest: +SKIP
        >>> finetune(net, *splits, preset="medmnist", init="scratch", epochs=10).metrics  # doctest: +SKIP
    """
    return Finetuner(preset, seed=seed, **kwargs).fit(model, train, val, task=task).score(test, metrics)


def _fit(module: FinetuneModule, batches: StepBatches, val: ImageDataset | None, cfg: FinetuneConfig,
         device: torch.device, *, val_every: int | None, ckpt_dir: Path | None, progress: bool,
         callbacks: Sequence[pl.Callback]) -> None:
    """Run (or resume) the Lightning loop; on success the checkpoint folder's `last.ckpt` is removed."""
    if len(batches.ds) < 2:
        raise DataError(f"Finetuning needs at least 2 training images; got {len(batches.ds)}.")
    val_batches = EvalBatches(val, module.contract, _eval_batch_size(cfg, val)) if val is not None else None
    fit_resumable(module, batches, val_batches, val_every=val_every, ckpt_dir=ckpt_dir, device=device,
                  bf16=cfg.bf16, deterministic=cfg.deterministic, progress=progress, callbacks=callbacks)
