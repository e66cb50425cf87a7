"""The Lightning pieces of segmentation training: the U-Net module, its losses, selection and checkpoint state."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from medtransfer.data.transforms import match_channels, normalize, to_tensor
from medtransfer.errors import TrainingError
from medtransfer.models.card import InputContract
from medtransfer.protocols._seg_augment import augment_pairs
from medtransfer.protocols._seg_config import SegmentConfig

_STATE_KEY = "medtransfer_segment"
_EPS = 1.0  # soft-Dice smoothing over a pooled batch (MONAI's DiceLoss smooths by 1e-5 per image)
_GD_EPS = 1e-5  # generalised Dice: its weighted sums are of order 1/volume, so only MONAI's small smoothing works


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Per-class probabilities (B, K, ...): a single logit is the foreground of a 2-class task (sigmoid)."""
    logits = logits.float()
    if logits.shape[1] == 1:
        fg = torch.sigmoid(logits)
        return torch.cat([1 - fg, fg], dim=1)
    return torch.softmax(logits, dim=1)


def segmentation_loss(logits: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """``dice`` (soft Dice of the foreground classes, pooled over the batch), ``bce`` (binary or multi-class
    cross-entropy), ``dice_bce`` (their sum) or ``weighted_dice`` (generalised Dice, Sudre et al. 2017, as MONAI's
    ``GeneralizedDiceLoss(batch=True)``: class weights 1 / volume^2, a class absent from the batch weighted as the
    heaviest present one; Taleb et al.'s weighted Dice for small structures)."""
    logits = logits.float()
    n_classes = max(2, logits.shape[1])
    if kind in ("bce", "dice_bce"):
        ce = (F.binary_cross_entropy_with_logits(logits[:, 0], y.float()) if logits.shape[1] == 1
              else F.cross_entropy(logits, y))
        if kind == "bce":
            return ce
    p = probabilities(logits)[:, 1:]  # (B, K - 1, ...) foreground classes
    onehot = F.one_hot(y, n_classes).movedim(-1, 1)[:, 1:].float()
    axes = [0, *range(2, p.dim())]
    inter, total = (p * onehot).sum(axes), (p + onehot).sum(axes)  # (K - 1,)
    if kind == "weighted_dice":
        volume = onehot.sum(axes)  # (K - 1,)
        w = torch.where(volume > 0, 1.0 / volume.clamp_min(1.0) ** 2, torch.zeros_like(volume))
        w = torch.where(volume > 0, w, w.max())  # MONAI: an absent class gets the largest weight
        return 1 - (2 * (w * inter).sum() + _GD_EPS) / ((w * total).sum() + _GD_EPS)
    dice = 1 - ((2 * inter + _EPS) / (total + _EPS)).mean()
    return dice + ce if kind == "dice_bce" else dice


class SegmentModule(pl.LightningModule):
    """A U-Net trained on image/mask batches; keeps a copy of the weights with the lowest validation loss
    (the reference's checkpoint choice) and stops after `patience` validations without improvement."""

    def __init__(self, net: nn.Module, cfg: SegmentConfig, *, contract: InputContract, seed: int, total_steps: int,
                 warmup_steps: int, run_key: str) -> None:
        super().__init__()
        self.net, self.cfg, self.contract, self.seed = net, cfg, contract, seed
        self.total_steps, self.warmup_steps, self.run_key = total_steps, warmup_steps, run_key
        self.encoder_params = list(net.encoder_parameters())  # type: ignore[operator]
        self.best_state_: dict[str, torch.Tensor] | None = None
        self.best_score_, self.best_step_, self.bad_evals_ = float("inf"), -1, 0
        self.history_: list[dict[str, Any]] = []
        self._val: list[tuple[float, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 channels-last batch -> normalised float (B, C, ...) as the backbone's input contract says."""
        x = match_channels(to_tensor(images), self.contract.in_chans)
        return normalize(x, mean=self.contract.mean, std=self.contract.std, normalization=self.contract.normalization)

    def _frozen(self) -> bool:
        return self.cfg.encoder == "frozen" or self.global_step < self.warmup_steps

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, y = batch
        x, y = augment_pairs(to_tensor(images), y, self.cfg.augment, seed=self.seed, step=self.global_step)
        x = normalize(match_channels(x, self.contract.in_chans), mean=self.contract.mean, std=self.contract.std,
                      normalization=self.contract.normalization)
        frozen = self._frozen()
        for p in self.encoder_params:  # a frozen encoder keeps its BatchNorm statistics too
            p.requires_grad_(not frozen)
        self.net.encoder.train(not frozen)  # type: ignore[union-attr]
        loss = segmentation_loss(self(x), y, self.cfg.loss)
        if not torch.isfinite(loss):
            raise TrainingError(f"Segmentation training stopped at step {self.global_step}: the loss is "
                                f"{loss.item()}. Lower the learning rate (lr={self.cfg.lr}) or check the images.")
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False, batch_size=len(y))
        return loss

    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        opt = torch.optim.Adam(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        total = self.total_steps

        def factor(step: int) -> float:  # cosine over training (per step), or constant
            return 0.5 * (1.0 + float(np.cos(np.pi * min(step, total) / total))) if cfg.schedule == "cosine" else 1.0

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------ validation and selection

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, y = batch
        self._val.append((float(segmentation_loss(self(self.prepare(images)), y, self.cfg.loss)), len(y)))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._val:
            self._val.clear()
            return
        loss = sum(v * n for v, n in self._val) / sum(n for _, n in self._val)
        self._val.clear()
        self.history_.append({"step": self.global_step, "val_loss": loss})
        if loss < self.best_score_:  # strict: a tie keeps the earlier weights
            self.best_score_, self.best_step_, self.bad_evals_ = loss, self.global_step, 0
            self.best_state_ = {k: v.detach().clone() for k, v in self.state_dict().items()}
        else:
            self.bad_evals_ += 1
            if self.cfg.patience is not None and self.bad_evals_ >= self.cfg.patience:
                self.trainer.should_stop = True
        self.log("val_loss", loss, prog_bar=True)

    def restore_best(self) -> None:
        if self.best_state_ is not None:
            self.load_state_dict(self.best_state_)

    # ------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[_STATE_KEY] = {"run_key": self.run_key, "best_state": self.best_state_,
                                  "best_score": self.best_score_, "best_step": self.best_step_,
                                  "bad_evals": self.bad_evals_, "history": copy.deepcopy(self.history_)}

    def on_load_checkpoint(self, checkpoint: Mapping[str, Any]) -> None:
        state = checkpoint.get(_STATE_KEY)
        if state is None or state["run_key"] != self.run_key:
            raise TrainingError("The checkpoint to resume from belongs to another segmentation run; delete its "
                                "folder or pass another checkpoint_dir.")
        self.best_state_, self.best_score_ = state["best_state"], state["best_score"]
        self.best_step_, self.bad_evals_, self.history_ = state["best_step"], state["bad_evals"], state["history"]
