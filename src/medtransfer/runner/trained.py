"""Trained cells of a grid (finetuning, segmentation): images in, a model trained per cell, no feature cache.

A trained cell keeps its Lightning checkpoint under ``$MEDTRANSFER_HOME/runs/<protocol>/<cell_id>/`` while it runs,
so a grid killed mid-cell resumes that cell from its last checkpoint on the next ``bench`` call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from medtransfer import data as mdata
from medtransfer.config import home
from medtransfer.data.splits import label_subset
from medtransfer.errors import ConfigError, DataError
from medtransfer.protocols.base import ClassificationResult

# The protocols that train a model on images instead of reading cached features.
TRAINED_PROTOCOLS = ("finetune", "segment")
OVERLAY_IMAGES = 4  # test images drawn in a segmentation cell's overlay PNG


def checkpoint_dir(protocol: str, cell_id: str) -> Path:
    """Where a trained cell keeps ``last.ckpt`` while it runs (keyed by the cell's config hash)."""
    return home() / "runs" / protocol / cell_id


def check_trained_options(protocol: str, options: dict[str, Any]) -> None:
    """Raise ConfigError when `options` are not settings of `protocol`: for ``finetune`` a preset, ``search`` and
    FinetuneConfig fields; for ``segment`` a preset and SegmentConfig fields."""
    opts = dict(options)
    if protocol == "segment":
        from medtransfer.protocols.segmentation import resolve_config as segment_config

        segment_config(opts.pop("preset", "default"), **opts)
        return
    from medtransfer.protocols.finetune import resolve_config

    preset, g = opts.pop("preset", "medmnist"), opts.pop("search", None)
    if g is not None and (isinstance(g, bool) or not isinstance(g, int) or g < 1):
        raise ConfigError(f"The 'search' option of {protocol} must be an int in the range [1, inf) (the grid "
                          f"size g). Got {g!r} instead.")
    resolve_config(preset, **opts)


def run_trained(protocol: str, model: nn.Module, dataset: str, *, seed: int, fraction: float | None = None,
                per_class: int | None = None, options: dict[str, Any] | None = None,
                data_root: str | Path | None = None, dataset_options: dict[str, Any] | None = None,
                cell_id: str | None = None, progress: bool = False,
                figures: str | Path | None = None) -> ClassificationResult:
    """Finetune (or, for ``segment``, train a U-Net on) `model` on `dataset` with a label budget on train (val
    and test stay whole).

    The budget draws the same rows as the frozen protocols' (`label_subset` on the flattened train labels, same
    seed), so frozen and trained results at one (fraction, seed) are on the same images.

    Args:
        options: `finetune` options: ``preset`` plus any `FinetuneConfig` field (``epochs: 2``, ``init: scratch``);
            ``search: g`` runs Anton et al.'s (lr, weight decay) grid of size g instead (`finetune_search`; its
            candidates are not checkpointed).
        cell_id: keys the checkpoint folder (resume after a kill); None: no checkpoints.
        figures: ``segment`` writes its overlays of the first test images to this PNG (None: none).
    """
    from medtransfer.protocols._finetune_data import SubsetDataset, labels_of
    from medtransfer.protocols.finetune import finetune  # imports Lightning: only when a trained cell runs
    from medtransfer.runner._kinds import check_protocol_fits

    check_protocol_fits(protocol, dataset)
    opts = dict(options or {})
    card = mdata.get_card(dataset)
    splits = {s: mdata.load(dataset, s, data_root=data_root, **(dataset_options or {}))
              for s in ("train", "val", "test") if s in card.splits}
    missing = [s for s in ("train", "test") if s not in splits]
    if missing:
        raise DataError(f"Dataset {dataset!r} has no {' or '.join(missing)} split (it has {list(splits)}); "
                        f"finetuning trains on train and scores on test. Give the folder a {missing[0]}/ "
                        f"subfolder (or a split column in its CSV).")
    train = splits["train"]
    if per_class is not None or (fraction is not None and fraction < 1.0):
        keep = label_subset(labels_of(train), fraction=fraction if per_class is None else None,
                            per_class=per_class, seed=seed)
        train = SubsetDataset(train, keep)
    ckpt = checkpoint_dir(protocol, cell_id) if cell_id is not None else None
    if protocol == "segment":
        return _segment(model, train, splits, opts, seed=seed, ckpt=ckpt, progress=progress, figures=figures)
    preset, g = opts.pop("preset", "medmnist"), opts.pop("search", None)
    if g is not None:  # Anton et al.'s (lr, weight decay) grid, each candidate selected on validation
        from medtransfer.protocols.finetune_search import finetune_search

        return finetune_search(model, train, splits.get("val"), splits["test"], g=int(g), preset=preset,
                               seed=seed, progress=progress, **opts)
    return finetune(model, train, splits.get("val"), splits["test"], preset=preset, seed=seed,
                    checkpoint_dir=ckpt, progress=progress, **opts)


def _segment(model: nn.Module, train: Any, splits: dict[str, Any], opts: dict[str, Any], *, seed: int,
             ckpt: Path | None, progress: bool, figures: str | Path | None) -> ClassificationResult:
    from medtransfer.protocols.segmentation import Segmenter  # imports Lightning and smp: only when it runs

    seg = Segmenter(opts.pop("preset", "default"), seed=seed, checkpoint_dir=ckpt, progress=progress, **opts)
    test = splits["test"]
    result = seg.fit(model, train, splits.get("val")).score(test)
    if figures is not None:
        from medtransfer.runner.figures import mask_overlays

        rows = np.arange(min(OVERLAY_IMAGES, len(test)))
        images, truths = test.pairs(rows)
        mask_overlays(figures, list(images), list(truths), seg.predict(test, rows))
    return result


def run_cli_trained(protocol: str, model: str, dataset: str, *, seed: int, fraction: float | None,
                    per_class: int | None, options: dict[str, Any], data_root: str | Path | None,
                    progress: bool, figures: str | Path | None = None) -> ClassificationResult:
    """`medtransfer eval finetune|segment ...`: one trained run, checkpointed under a key of its settings.

    Run the same command again after a kill (Ctrl+C, a lost job) and it resumes from the last checkpoint.
    """
    from medtransfer.config import config_hash
    from medtransfer.models import create

    key = config_hash({"model": model, "dataset": dataset, "protocol": protocol, "seed": seed, "fraction": fraction,
                       "per_class": per_class, "options": options,
                       "data_root": None if data_root is None else str(Path(data_root).resolve())})
    return run_trained(protocol, create(model), dataset, seed=seed, fraction=fraction, per_class=per_class,
                       options=options, data_root=data_root, cell_id=f"cli-{key}", progress=progress,
                       figures=figures)
