"""The Lightning pieces of finetuning: the backbone + head module, its loss, selection and checkpoint state."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from medtransfer.data.transforms import match_channels, normalize, resize_crop, to_tensor
from medtransfer.errors import TrainingError
from medtransfer.models.card import InputContract
from medtransfer.protocols._augment import augment
from medtransfer.protocols._finetune_config import FinetuneConfig
from medtransfer.protocols.metrics import metric_value

_STATE_KEY = "medtransfer_finetune"


def ordinal_targets(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Cumulative encoding (Taleb et al. 2020): class k -> (C - 1) bits, bit j = [k > j]. (B,) -> (B, C - 1)."""
    return (y[:, None] > torch.arange(n_classes - 1, device=y.device)[None]).float()


def validation_loss(proba: np.ndarray, y: np.ndarray, task: str) -> float:
    """The mean loss of probabilities `proba` against labels `y`: BCE per label for multi-label, the negative
    log-likelihood of the true class otherwise (what cross-entropy gives from the logits), clamped at 1e-7."""
    p = np.clip(proba, 1e-7, 1 - 1e-7)
    if task == "multi-label":
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    return float(-np.log(p[np.arange(len(y)), np.asarray(y, dtype=np.int64)]).mean())


def probabilities(logits: torch.Tensor, task: str, *, ordinal: bool) -> torch.Tensor:
    """Class probabilities from logits: softmax; sigmoid per label; or P(y = k) from cumulative sigmoids."""
    logits = logits.float()
    if task == "multi-label":
        return torch.sigmoid(logits)
    if not ordinal:
        return torch.softmax(logits, dim=1)
    above = torch.sigmoid(logits).cummin(dim=1).values  # P(y > j), forced non-increasing in j   # (B, C - 1)
    ones = torch.ones_like(above[:, :1])
    cum = torch.cat([ones, above, torch.zeros_like(ones)], dim=1)  # P(y >= k), k = 0..C          # (B, C + 1)
    return cum[:, :-1] - cum[:, 1:]  # (B, C)


class FinetuneModule(pl.LightningModule):
    """Backbone + linear head, trained with a preset's optimiser and schedule; keeps a copy of the best weights.

    Selection state (``best_state_`` and friends) lives here, not in a Lightning callback, so that it is saved in
    and restored from every checkpoint: a resumed run restores the same best weights as an uninterrupted one.
    """

    def __init__(self, backbone: nn.Module, n_out: int, cfg: FinetuneConfig, *, task: str, n_classes: int,
                 contract: InputContract, seed: int, total_steps: int, warmup_steps: int, run_key: str) -> None:
        super().__init__()
        self.backbone, self.head = backbone, nn.Linear(backbone.card.feature_dim, n_out)
        if cfg.head_init == "normal":  # Hosseinzadeh Taher et al.: weights N(0, 0.01), bias 0
            nn.init.normal_(self.head.weight, 0.0, 0.01)
            nn.init.zeros_(self.head.bias)
        self.cfg, self.task, self.n_classes, self.contract = cfg, task, n_classes, contract
        self.seed, self.total_steps, self.warmup_steps, self.run_key = seed, total_steps, warmup_steps, run_key
        self.ordinal = cfg.ordinal_encoding and task == "ordinal"
        self.best_state_: dict[str, torch.Tensor] | None = None
        self.best_score_, self.best_step_, self.bad_evals_ = -float("inf"), -1, 0
        # the plateau schedule's state: the lowest val loss, validations since, and the lr factor reached
        self.plateau_best_, self.plateau_bad_, self.lr_scale_ = float("inf"), 0, 1.0
        self.history_: list[dict[str, Any]] = []
        self._val_out: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    # ------------------------------------------------------------ training

    def _train_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, C) / (B, D, H, W, C) on the device -> augmented, normalised float (B, C, S, S[, S])."""
        x = match_channels(to_tensor(images), self.contract.in_chans)
        if self.cfg.augment == "none":  # exactly the evaluation batches' resize + centre crop (preprocess)
            if self.contract.input_size is not None:
                x = resize_crop(x, self.contract.input_size, crop_pct=self.contract.crop_pct,
                                interpolation=self.contract.interpolation)
        else:
            size = self.contract.input_size or x.shape[-1]
            x = augment(x, self.cfg.augment, size=size, seed=self.seed, step=self.global_step)
        x = normalize(x, mean=self.contract.mean, std=self.contract.std, normalization=self.contract.normalization)
        # channels-last, the layout preprocess() gives evaluation batches
        return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.task == "multi-label":
            return F.binary_cross_entropy_with_logits(logits, y)
        if self.ordinal:
            return F.binary_cross_entropy_with_logits(logits, ordinal_targets(y, self.n_classes))
        return F.cross_entropy(logits, y)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, y = batch
        x = self._train_input(images)
        frozen = self.global_step < self.warmup_steps  # Taleb et al.: warm-up epochs train the head alone
        self.backbone.train(not frozen)  # a frozen encoder keeps its BatchNorm statistics too (as Keras does)
        with torch.set_grad_enabled(not frozen):
            feats = self.backbone(x)
        loss = self._loss(self.head(feats), y)
        if not torch.isfinite(loss):
            raise TrainingError(f"Finetuning stopped at step {self.global_step}: the training loss is "
                                f"{loss.item()}. Lower the learning rate (lr={self.cfg.lr}), check the images for "
                                "NaN/inf, or train without bf16 (bf16=false).")
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False, batch_size=len(y))
        return loss

    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        if cfg.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(self.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                                         nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
        else:
            opt = torch.optim.Adam(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        total, milestones = self.total_steps, [round(m * self.total_steps) for m in cfg.milestones]

        def factor(step: int) -> float:
            if cfg.schedule == "cosine":  # CosineAnnealingLR(T_max=total) stepped every step, eta_min 0
                return 0.5 * (1.0 + float(np.cos(np.pi * min(step, total) / total)))
            if cfg.schedule == "multistep":
                return cfg.gamma ** sum(step >= m for m in milestones)
            if cfg.schedule == "plateau":  # lowered at validation (`_plateau`); LambdaLR re-reads it every step
                return self.lr_scale_
            return 1.0

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------ validation and selection

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self._val_out.append((probabilities(self(x), self.task, ordinal=self.ordinal).cpu(), y.cpu()))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._val_out:
            self._val_out.clear()
            return
        proba = torch.cat([p for p, _ in self._val_out]).double().numpy()
        y = torch.cat([t for _, t in self._val_out]).numpy()
        self._val_out.clear()
        loss = validation_loss(proba, y, self.task)  # ordinal too: the NLL of its class probabilities
        if self.cfg.schedule == "plateau":
            self._plateau(loss)
        # higher is better for every selection score: the loss enters negated
        select = self.cfg.select_metric
        score = -loss if select == "loss" else metric_value(select, self.task, y, proba)
        step = self.global_step
        self.history_.append({"step": step, f"val_{select}": -score if select == "loss" else score})
        if score > self.best_score_:  # strict: a tie keeps the earlier weights, as MedMNIST's `>` does
            self.best_score_, self.best_step_, self.bad_evals_ = score, step, 0
            # a deep copy: the reference kept `state_dict()` itself, whose tensors are the live weights
            self.best_state_ = {k: v.detach().clone() for k, v in self.state_dict().items()}
        else:
            self.bad_evals_ += 1
            if self.cfg.early_stopping and self.bad_evals_ >= self.cfg.patience:
                self.trainer.should_stop = True
        self.log(f"val_{select}", -score if select == "loss" else score, prog_bar=True)

    def _plateau(self, loss: float) -> None:
        """ReduceLROnPlateau (mode min, threshold 0): x gamma once more than `plateau_patience` validations in a
        row brought no lower loss."""
        if loss < self.plateau_best_:
            self.plateau_best_, self.plateau_bad_ = loss, 0
            return
        self.plateau_bad_ += 1
        if self.plateau_bad_ > self.cfg.plateau_patience:
            self.lr_scale_ *= self.cfg.gamma
            self.plateau_bad_ = 0

    def restore_best(self) -> None:
        """Load the best validated weights into the module (a no-op when nothing was validated)."""
        if self.best_state_ is not None:
            self.load_state_dict(self.best_state_)

    # ------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[_STATE_KEY] = {"run_key": self.run_key, "best_state": self.best_state_,
                                  "best_score": self.best_score_, "best_step": self.best_step_,
                                  "bad_evals": self.bad_evals_, "history": copy.deepcopy(self.history_),
                                  "plateau": (self.plateau_best_, self.plateau_bad_, self.lr_scale_)}

    def on_load_checkpoint(self, checkpoint: Mapping[str, Any]) -> None:
        state = checkpoint.get(_STATE_KEY)
        if state is None or state["run_key"] != self.run_key:
            raise TrainingError(f"The checkpoint to resume from belongs to another finetuning run (run key "
                                f"{None if state is None else state['run_key']!r}, this run {self.run_key!r}). "
                                "Delete its folder or pass another checkpoint_dir.")
        self.best_state_, self.best_score_ = state["best_state"], state["best_score"]
        self.best_step_, self.bad_evals_, self.history_ = state["best_step"], state["bad_evals"], state["history"]
        self.plateau_best_, self.plateau_bad_, self.lr_scale_ = state.get("plateau", (float("inf"), 0, 1.0))
