"""Lightning for medtransfer's loops: quiet (its per-run banners and data-loader hints are noise), and with
progress lines for logs and pipes (`ProgressLog`)."""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from medtransfer._progress import Ticker, say

# warnings Lightning raises for choices made on purpose (num_workers=0 on CPU, checkpoints saved mid-epoch ...)
NOISE = (".*does not have many workers.*", ".*num_workers.*", ".*resuming from a checkpoint that ended before the "
         "epoch.*", ".*no `val_dataloader`.*", ".*LeafSpec.*", ".*litlogger.*", ".*exists and is not empty.*")
_ROOTS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning")
log = logging.getLogger(__name__)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's loggers at WARNING and its known-noise warnings ignored, restored on exit."""
    names = [n for n in (*_ROOTS, *logging.root.manager.loggerDict) if n.split(".")[0] in _ROOTS
             or n.startswith("lightning.")]
    levels = {name: logging.getLogger(name).level for name in dict.fromkeys(names)}
    for name in levels:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in NOISE:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


class ProgressLog(pl.Callback):
    """Training steps, loss and validation scores as progress lines (`medtransfer._progress`), at a steady pace.

    Args:
        label: names the run in every line, e.g. ``finetune resnet18-small / breastmnist``.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.ticker: Ticker | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        total = trainer.estimated_stepping_batches
        self.ticker = Ticker(self.label, int(total) if total != float("inf") else None, unit="steps")
        self.ticker.done = trainer.global_step  # a resumed run counts from where it stopped

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.ticker is not None:
            self.ticker.advance(1, self._metrics(trainer))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        scores = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
        if scores and not trainer.sanity_checking:
            say("%s: step %d, %s", self.label, trainer.global_step,
                ", ".join(f"{k} {float(v):.4f}" for k, v in scores.items()))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.ticker is not None:
            self.ticker.finish(self._metrics(trainer))

    @staticmethod
    def _metrics(trainer: pl.Trainer) -> str:
        loss = trainer.callback_metrics.get("loss")
        return f"epoch {trainer.current_epoch}" + (f", loss {float(loss):.4f}" if loss is not None else "")


# the least time between two resume checkpoints: a save of a ResNet-18's training state takes 0.5-1.2 s on a CPU,
# while an epoch of a small dataset (or a validation interval) can be a few steps (docs/decisions.md)
CHECKPOINT_EVERY_S = 60.0


class LastCheckpoint(pl.Callback):
    """Keeps ``<dir>/last.ckpt``: written after a validation (or every `every` steps when there is none), or, with
    `at_epoch_end`, at the end of a training epoch; at most once per `min_seconds` (`CHECKPOINT_EVERY_S` unless
    given), and never when the run has reached its last step or epoch (its own output follows at once).

    Saving after validation, not at the end of the step, keeps that validation in the checkpoint: a resumed run
    does not redo it and selects among exactly the same candidates. Writes go to a temporary file that replaces
    the old one, so a kill during a save leaves the previous checkpoint intact. A save skipped because the last
    one is recent costs a killed run at most `min_seconds` of work: it resumes from the previous checkpoint and
    redoes those steps exactly (the batches, and pretraining's saved random streams, depend on the step alone).
    """

    def __init__(self, dirpath: Path, *, every: int | None = None, at_epoch_end: bool = False,
                 min_seconds: float | None = None) -> None:
        self.path, self.every = Path(dirpath) / "last.ckpt", every
        self.at_epoch_end = at_epoch_end
        self.min_seconds = CHECKPOINT_EVERY_S if min_seconds is None else min_seconds
        self.saves = 0
        self._last = 0.0

    def _maybe_save(self, trainer: pl.Trainer) -> None:
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1  # -1: no limit, as Lightning's
        ending = 0 <= trainer.max_steps <= trainer.global_step or (
            self.at_epoch_end and 0 <= max_epochs <= trainer.current_epoch + 1)
        due = time.monotonic() - self._last >= self.min_seconds
        # every process saves or none does (under DDP the save is collective): rank zero's clock decides
        if not trainer.strategy.broadcast(due and not ending, src=0):
            return
        tmp = self.path.with_suffix(".tmp")
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        self.saves += 1
        self._last = time.monotonic()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = time.monotonic()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and not self.at_epoch_end:
            self._maybe_save(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.every is not None and trainer.global_step % self.every == 0:
            self._maybe_save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.at_epoch_end:
            self._maybe_save(trainer)


def lightning_devices(device: torch.device) -> tuple[str, int | list[int]]:
    """Lightning's (accelerator, devices) for one torch device: ``cuda:1`` is GPU 1, not the first GPU."""
    if device.type == "cuda":
        return "gpu", [device.index or 0]
    return "cpu", 1


def _trainer(*, max_steps: int, val_every: int | None, ckpt_dir: Path | None, device: torch.device, bf16: bool,
             deterministic: bool, progress: bool, callbacks: Sequence[pl.Callback]) -> pl.Trainer:
    extra = [LastCheckpoint(ckpt_dir, every=None if val_every else 100)] if ckpt_dir is not None else []
    accelerator, devices = lightning_devices(device)
    return pl.Trainer(
        accelerator=accelerator, devices=devices, max_steps=max_steps, max_epochs=-1,
        val_check_interval=val_every or max_steps, check_val_every_n_epoch=None, num_sanity_val_steps=0,
        limit_val_batches=None if val_every else 0, precision="bf16-mixed" if bf16 else "32-true",
        # on CUDA some backward kernels (adaptive pooling's) have no deterministic version: warn there, don't fail
        deterministic=("warn" if device.type == "cuda" else True) if deterministic else False, logger=False,
        enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=progress, callbacks=[*callbacks, *extra])


def fit_resumable(module: pl.LightningModule, batches: Any, val_batches: Iterable[Any] | None, *,
                  val_every: int | None, ckpt_dir: Path | None, device: torch.device, bf16: bool,
                  deterministic: bool, progress: bool, callbacks: Sequence[pl.Callback]) -> None:
    """Run (or resume from ``ckpt_dir/last.ckpt``) a step-based Lightning loop; on success the checkpoint is
    removed. `batches` is an iterable dataset with ``total_steps`` and a ``start_step`` callable it starts from
    (`protocols._finetune_data.StepBatches`): the batch of step s is a function of the seed and s alone."""
    last = ckpt_dir / "last.ckpt" if ckpt_dir is not None else None
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    # Trainer(deterministic=...) sets torch's process-wide flag already when it is built
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with quiet_lightning():
        trainer = _trainer(max_steps=batches.total_steps, val_every=val_every, ckpt_dir=ckpt_dir, device=device,
                           bf16=bf16, deterministic=deterministic, progress=progress, callbacks=callbacks)
    batches.start_step = lambda: trainer.global_step  # a resumed trainer stands at its checkpoint's step
    loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=0, pin_memory=device.type == "cuda")
    val_loader = (torch.utils.data.DataLoader(val_batches, batch_size=None, num_workers=0)  # type: ignore[arg-type]
                  if val_batches is not None else None)
    resume = last if last is not None and last.exists() else None
    if resume is not None:
        log.info("resuming training from %s", resume)
    try:
        with quiet_lightning():
            trainer.fit(module, train_dataloaders=loader, val_dataloaders=val_loader, ckpt_path=resume)
    finally:  # Lightning's deterministic mode is process-wide: leave the process as it was for the code after
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
    if ckpt_dir is not None and last is not None:
        last.unlink(missing_ok=True)
        if not any(ckpt_dir.iterdir()):
            shutil.rmtree(ckpt_dir, ignore_errors=True)
