"""What every pretraining method shares: its config, the method interface, and the method registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medtransfer.errors import ConfigError
from medtransfer.registry import Registry


@dataclass(frozen=True)
class PretrainConfig:
    """One pretraining run. Defaults are PROTOCOLS.md §2 (SimCLR on MedMNIST 28 px).

    Attributes:
        method: ``simclr``, ``byol``, ``mocov2``, ``barlowtwins``, ``rotation``, ``rpl``, ``jigsaw``, ``cpc``
            or ``exemplar``.
        dataset: a registered dataset (its labels are never used) or a folder / CSV of images.
        model: the backbone to pretrain (a registered name); None: ``resnet18-small`` in 2D, ``resnet18-3d``
            in 3D.
        dims: 2 or 3; None takes the dataset's. A mismatch with the dataset raises.
        epochs: passes over the training split; the final epoch's weights are kept (no checkpoint selection,
            so test data is never looked at; the reference selected on the test split, PROTOCOLS.md §2).
        max_steps: stop after this many optimiser steps (-1: no limit); for tests and smoke runs.
        batch_size: upper bound; the run uses min(batch_size, N) with drop_last, as the reference.
        lr, weight_decay: AdamW; the learning rate follows a cosine to lr/50 over the run.
        temperature: NT-Xent temperature (SimCLR, MoCo-v2).
        augmentation: the 2D view sequence of the joint-embedding methods (pretrain/augment.py).
        seed: seeds the initialisation of the heads, the shuffling and the augmentations.
        samples: a random subset of this many training images (the reference's ``-samples``); None: all.
        dataset_options: loader options, e.g. ``{n: 500}`` for a phantom.
        options: method-specific settings (projection sizes, patch grid, jitter, code size ...), see each method.
        accelerator: Lightning ``accelerator``: "auto" (a GPU when there is one), "cpu", "gpu".
        devices: Lightning ``devices`` ("auto": every GPU, DDP when there are several; else the CPU).
        precision: Lightning precision; "auto": bf16-mixed where it pays (CUDA with bf16, CPUs with AMX), else
            32-true.
        num_workers: DataLoader workers; 0 keeps the images in this process (they are in memory already).
    """

    method: str
    dataset: str
    model: str | None = None
    dims: int | None = None
    epochs: int = 10
    max_steps: int = -1
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 1e-4
    temperature: float = 0.07
    augmentation: str = "natural"
    seed: int = 0
    samples: int | None = None
    data_root: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    accelerator: str = "auto"
    devices: str | int = "auto"
    precision: str = "auto"
    num_workers: int = 0

    def __post_init__(self) -> None:
        for key, lo in (("epochs", 1), ("batch_size", 2)):
            if getattr(self, key) < lo:
                raise ConfigError(f"The {key!r} parameter of PretrainConfig must be an int in the range "
                                  f"[{lo}, inf). Got {getattr(self, key)} instead.")
        if self.dims not in (None, 2, 3):
            raise ConfigError(f"The 'dims' parameter of PretrainConfig must be 2 or 3. Got {self.dims} instead.")
        if self.samples is not None and self.samples < 2:
            raise ConfigError(f"The 'samples' parameter of PretrainConfig must be at least 2. Got {self.samples}.")


class SSLMethod(nn.Module):
    """A backbone plus the heads of one self-supervised objective.

    `forward(x, progress)` takes a batch of images in [0, 1] with the backbone's channels, (B, C, H, W) or
    (B, C, D, H, W), and returns the scalar loss; `progress` in [0, 1] is the share of the run done (momentum
    schedules read it). Subclasses normalise with `normalize` before the backbone sees the images.
    """

    loss: Callable[..., torch.Tensor]  # the objective's loss on embeddings (joint-embedding methods)

    def __init__(self, backbone: nn.Module, *, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean), persistent=False)
        self.register_buffer("std", torch.tensor(std), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> the backbone's input normalisation (its card's mean/std)."""
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def forward(self, x: torch.Tensor, progress: float = 0.0) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def fp32_loss(self, *z: torch.Tensor) -> torch.Tensor:
        """``self.loss(*z)`` on fp32 copies with autocast off. Under bf16-mixed the projections come out in bf16
        and the losses' similarity / cross-correlation matmuls would run in bf16: ~0.4% error on each cosine,
        which NT-Xent multiplies by 1/τ (14 at τ 0.07), and on the diagonal Barlow Twins pulls to 1."""
        with torch.autocast(z[0].device.type, enabled=False):
            return self.loss(*(t.float() for t in z))


@dataclass(frozen=True)
class MethodEntry:
    """A registered method: its builder ``(backbone, feature_dim, cfg, mean, std) -> SSLMethod`` and its dims."""

    build: Callable[..., SSLMethod]
    dims: tuple[int, ...]
    description: str


METHODS: Registry[MethodEntry] = Registry("pretraining method")


def option(cfg: PretrainConfig, key: str, default: Any, kind: type) -> Any:
    """A method-specific option from ``cfg.options``, type-checked, with the method's paper default."""
    value = cfg.options.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"The {key!r} option of method {cfg.method!r} must be {kind.__name__}. Got {value!r} "
                          f"instead (options.{key}=...).")
    return value
