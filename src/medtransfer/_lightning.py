"""Lightning for medtransfer's loops: quiet (its per-run banners and data-loader hints are noise), and with
progress lines for logs and pipes (`ProgressLog`)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl

from medtransfer._progress import Ticker, say

# warnings Lightning raises for choices made on purpose (num_workers=0 on CPU, checkpoints saved mid-epoch ...)
NOISE = (".*does not have many workers.*", ".*num_workers.*", ".*resuming from a checkpoint that ended before the "
         "epoch.*", ".*no `val_dataloader`.*", ".*LeafSpec.*", ".*litlogger.*", ".*exists and is not empty.*")
_ROOTS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning")


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
