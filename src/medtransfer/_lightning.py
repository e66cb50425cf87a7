"""Quiet Lightning: its per-run banners and data-loader hints are noise for medtransfer's own loops."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

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
