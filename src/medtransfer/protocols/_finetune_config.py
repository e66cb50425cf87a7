"""Finetuning settings: `FinetuneConfig`, the reference studies' presets, and their resolution with overrides.

Below `finetune` and `_finetune_module` (which both read it), so neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medtransfer.config import from_dict
from medtransfer.errors import ConfigError
from medtransfer.protocols._augment import AUGMENTATIONS
from medtransfer.protocols._presets import preset_values


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything a finetuning run does. Start from a preset (`PRESETS`) and override fields by name.

    Attributes:
        optimizer: ``sgd`` (with `momentum`, `nesterov`) or ``adam``.
        lr, weight_decay: optimiser settings.
        batch_size: images per step (capped at the training-set size).
        epochs, steps: the length of training; exactly one is set (a preset's `steps` is dropped when you
            override `epochs`, and the other way round).
        schedule: ``cosine`` (per step, to 0), ``multistep`` (x `gamma` at each of `milestones`, given as shares
            of training so that 0.5 / 0.75 are MedMNIST's epochs 50 / 75 of 100 at any length), ``plateau``
            (ReduceLROnPlateau on the validation loss: x `gamma` after more than `plateau_patience` validations
            without a lower loss) or ``constant``.
        plateau_patience: validations without improvement the ``plateau`` schedule waits before lowering.
        augment: ``none``, ``rrc_flip`` (RandomResizedCrop + horizontal flip), ``rrc_flip_rot7`` (and a random
            rotation within 7 degrees) or ``zoom_flip``.
        test_crops: 1 (the model's resize + centre crop) or 10 (resize to 256/224 of the input size, then
            torchvision's TenCrop: four corners, the centre and their mirrors, probabilities averaged).
        head_init: ``default`` (PyTorch's Linear init) or ``normal`` (weights N(0, 0.01), bias 0).
        warmup_epochs: epochs at the start that train the head alone, the encoder frozen.
        select_best: validate and keep the weights with the best `select_metric` (else keep the last weights).
        early_stopping: stop after `patience` validations without improvement; implies `select_best`.
        val_every: validate every this many steps; None: once per epoch.
        val_source: ``split`` (the dataset's val split) or ``holdout`` (a stratified `holdout` share of train,
            as Anton et al.); ``split`` falls back to a hold-out when no val split is given.
        ordinal_encoding: for ordinal tasks, C - 1 cumulative sigmoid outputs with BCE instead of softmax + CE.
        init: ``pretrained`` (the model as given) or ``scratch`` (its architecture, re-initialised from `seed`).
        bf16: bf16 autocast for the forward passes (training and evaluation).
        deterministic: deterministic algorithms and seeded RNGs (a resumed run then ends with the same weights).
        n_boot: bootstrap resamples for the test-metric intervals.
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    batch_size: int = 128
    epochs: int | None = 100
    steps: int | None = None
    schedule: str = "multistep"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    plateau_patience: int = 5
    augment: str = "none"
    warmup_epochs: int = 0
    select_best: bool = True
    select_metric: str = "auc"
    early_stopping: bool = False
    patience: int = 3
    val_every: int | None = None
    val_source: str = "split"
    holdout: float = 0.2
    ordinal_encoding: bool = False
    init: str = "pretrained"
    bf16: bool = False
    deterministic: bool = True
    n_boot: int = 1000
    test_crops: int = 1
    head_init: str = "default"

    def __post_init__(self) -> None:
        choices = {"optimizer": ("sgd", "adam"), "schedule": ("cosine", "multistep", "plateau", "constant"),
                   "augment": AUGMENTATIONS, "select_metric": ("auc", "accuracy", "balanced_accuracy", "loss"),
                   "val_source": ("split", "holdout"), "init": ("pretrained", "scratch"), "test_crops": (1, 10),
                   "head_init": ("default", "normal")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"The {name!r} parameter of FinetuneConfig must be one of {list(allowed)}. "
                                  f"Got {getattr(self, name)!r} instead.")
        if (self.epochs is None) == (self.steps is None):
            raise ConfigError("FinetuneConfig needs exactly one of 'epochs' and 'steps'. Got epochs="
                              f"{self.epochs!r}, steps={self.steps!r}.")
        for name in ("batch_size", "epochs", "steps", "patience", "val_every", "plateau_patience"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"The {name!r} parameter of FinetuneConfig must be an int in the range [1, inf). "
                                  f"Got {value!r} instead.")
        if not 0.0 < self.holdout < 1.0 or self.lr <= 0.0:
            raise ConfigError(f"FinetuneConfig needs 0 < holdout < 1 and lr > 0. Got holdout={self.holdout!r}, "
                              f"lr={self.lr!r}.")


PRESETS: dict[str, dict[str, Any]] = {
    "medmnist": {},  # the FinetuneConfig defaults are MedMNIST v2's protocol
    "medmnist3d": {"batch_size": 32},  # MedMNIST v2's 3D script: the same protocol at batch 32
    "anton2022": {"optimizer": "sgd", "lr": 1e-2, "weight_decay": 1e-8, "batch_size": 64, "epochs": None,
                  "steps": 5000, "schedule": "cosine", "augment": "rrc_flip", "select_best": False,
                  "select_metric": "accuracy", "val_every": 200, "val_source": "holdout"},
    # Hosseinzadeh Taher et al. 2021 (main_classification.py): Adam 2e-4, batch 32, ReduceLROnPlateau(0.5,
    # patience 10 // 2) and early stopping after 10 epochs on the val loss, the best-val-loss weights kept,
    # RandomResizedCrop + flip + RandomRotation(7), TenCrop at test, a N(0, 0.01) head; 1000 epochs at most.
    "hosseinzadeh2021": {"lr": 2e-4, "batch_size": 32, "epochs": 1000, "schedule": "plateau", "gamma": 0.5,
                         "plateau_patience": 5, "augment": "rrc_flip_rot7", "select_metric": "loss",
                         "early_stopping": True, "patience": 10, "test_crops": 10, "head_init": "normal"},
    "taleb2020": {"lr": 5e-5, "batch_size": 32, "epochs": 20, "warmup_epochs": 3, "schedule": "constant",
                  "augment": "zoom_flip", "select_best": False, "ordinal_encoding": True},
}


def resolve_config(preset: str = "medmnist", **overrides: Any) -> FinetuneConfig:
    """A preset with `overrides` applied (strict keys, did-you-mean on a typo).

    Examples:
        >>> resolve_config("anton2022", early_stopping=True).steps
        5000
        >>> resolve_config("anton2022", epochs=2).steps is None
        True
    """
    values = preset_values("finetune", PRESETS, preset, overrides)
    return from_dict(FinetuneConfig, values, where=f"finetune options (preset {preset!r})")
