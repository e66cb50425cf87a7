"""Batches for finetuning: uint8 training batches chosen by step, preprocessed evaluation batches, subsets.

The batch of training step ``s`` depends only on (seed, s): epoch ``s // steps_per_epoch`` shuffles the training
set with its own seeded permutation. A run resumed from a checkpoint at step ``s`` therefore sees exactly the
batches an uninterrupted run sees from ``s`` on, with no data-loader state to save.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset

from medtransfer.data.base import ImageDataset
from medtransfer.data.transforms import preprocess
from medtransfer.errors import DataError
from medtransfer.models.card import InputContract
from medtransfer.protocols.base import flatten_single


class SubsetDataset(ImageDataset):
    """The rows `index` of another split (a label budget, or the 80/20 hold-out of Anton et al.)."""

    def __init__(self, parent: ImageDataset, index: np.ndarray) -> None:
        self.parent, self.index = parent, np.asarray(index, dtype=np.int64)
        super().__init__(parent.card, parent.split, np.asarray(parent.labels)[self.index])

    def images(self, index: np.ndarray) -> np.ndarray | list[np.ndarray]:
        return self.parent.images(self.index[np.asarray(index)])

    def masks(self, index: np.ndarray) -> np.ndarray | list[np.ndarray]:
        return self.parent.masks(self.index[np.asarray(index)])

    def fov(self, index: np.ndarray) -> np.ndarray | list[np.ndarray] | None:
        return self.parent.fov(self.index[np.asarray(index)])

    def pairs(self, index: np.ndarray) -> tuple[np.ndarray | list[np.ndarray], np.ndarray | list[np.ndarray]]:
        return self.parent.pairs(self.index[np.asarray(index)])

    @property
    def fingerprint(self) -> str:
        return self.parent.fingerprint + ":" + hashlib.sha256(self.index.tobytes()).hexdigest()[:16]


def labels_of(ds: ImageDataset) -> np.ndarray:
    """The split's labels, (N, 1) flattened to (N,) as `Features` does (so label budgets draw the same rows)."""
    return flatten_single(np.asarray(ds.labels))


def holdout(train: ImageDataset, share: float, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """A stratified, seeded (train, val) split of `train` with `share` of it held out for validation.

    Each class gives ``max(1, round(share * n))`` images to validation but always keeps one for training, so a
    class of two images is in both sides and a class of one only in train (multi-label rows: a random share).
    """
    y = labels_of(train)
    rng = np.random.default_rng(seed)
    if y.ndim == 2:
        val = rng.permutation(len(y))[:max(1, round(share * len(y)))]
    else:
        per_class = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
        val = np.concatenate([idx[:min(len(idx) - 1, max(1, round(share * len(idx))))] for idx in per_class])
    val = np.sort(val.astype(np.int64))
    if len(val) == 0:
        raise DataError(f"Holding out {share:.0%} of {len(train)} training images ({train.card.name}) for "
                        f"validation leaves none: every class has a single image. Use a larger label budget or "
                        f"pass a val split (val_source='split').")
    return SubsetDataset(train, np.setdiff1d(np.arange(len(train)), val)), SubsetDataset(train, val)


def _targets(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(y)).float() if y.ndim == 2 else torch.from_numpy(y).long()


@dataclasses.dataclass
class StepBatches(IterableDataset):
    """Training batches from step `start_step()` to `total_steps`, as uint8 (B, H, W, C) plus targets.

    Attributes:
        ds: the training split.
        batch_size: images per step; an epoch's last, smaller batch is kept (as PyTorch's default
            DataLoader), except a batch of one image, which BatchNorm cannot train on.
        seed: picks each epoch's permutation.
        total_steps: where iteration ends.
        start_step: called when iteration starts: the step a resumed trainer stands at.
    """

    ds: ImageDataset
    batch_size: int
    seed: int
    total_steps: int
    start_step: Callable[[], int] = lambda: 0

    def __post_init__(self) -> None:
        super().__init__()
        self.labels = labels_of(self.ds)

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.ds)
        full, rest = divmod(n, self.batch_size)
        return max(1, full + (1 if rest > 1 else 0))

    def step_index(self, step: int) -> np.ndarray:
        """The training-set rows of step `step`."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.ds))
        return perm[pos * self.batch_size: (pos + 1) * self.batch_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for step in range(self.start_step(), self.total_steps):
            index = self.step_index(step)
            images = self.ds.images(index)
            if not isinstance(images, np.ndarray):
                raise DataError(f"Dataset {self.ds.card.name!r} holds images of different sizes; finetuning needs "
                                "one size. Resize the images on disk, or load them at one size.")
            yield torch.from_numpy(np.ascontiguousarray(images)), _targets(self.labels[index])


@dataclasses.dataclass
class EvalBatches(IterableDataset):
    """A whole split in order, preprocessed by the model's input contract (as feature extraction does)."""

    ds: ImageDataset
    contract: InputContract
    batch_size: int

    def __post_init__(self) -> None:
        super().__init__()
        self.labels = labels_of(self.ds)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        kw = dataclasses.asdict(self.contract)
        for start in range(0, len(self.ds), self.batch_size):
            index = np.arange(start, min(start + self.batch_size, len(self.ds)))
            yield preprocess(self.ds.images(index), **kw), _targets(self.labels[index])
