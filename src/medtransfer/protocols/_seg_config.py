"""Segmentation settings: `SegmentConfig`, the reference studies' presets, and their resolution with overrides.

Below `segmentation` and `_seg_module` (which both read it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medtransfer.config import from_dict
from medtransfer.errors import ConfigError
from medtransfer.protocols._presets import preset_values
from medtransfer.protocols._seg_augment import SEG_AUGMENTATIONS
from medtransfer.registry import did_you_mean

LOSSES = ("dice", "bce", "dice_bce", "weighted_dice")


@dataclass(frozen=True)
class SegmentConfig:
    """Everything a segmentation run does. Start from a preset (`PRESETS`) and override fields by name.

    Attributes:
        size: the side images and masks are resized to for training and prediction (None: as stored; all images
            must then share one size). Scores are always computed at the stored size.
        loss: ``dice``, ``bce``, ``dice_bce`` or ``weighted_dice`` (see `_seg_module.segmentation_loss`).
        encoder: ``trained`` (finetuned with the decoder) or ``frozen`` (its weights and BN statistics fixed).
        warmup_epochs: epochs at the start with the encoder frozen (Taleb et al.), then it trains.
        epochs, steps: the length of training; exactly one is set.
        schedule: ``cosine`` (per step, to 0) or ``constant``.
        patience: stop after this many validations without a lower validation loss (None: never).
        val_every: validate every this many steps (None: once per epoch); the weights with the lowest
            validation loss are the ones scored.
        holdout: share of train held out for validation when no val split is given.
        augment: ``none``, ``flip`` or ``hosseinzadeh2021`` (`_seg_augment`).
        init: ``pretrained`` (the backbone as given) or ``scratch`` (its architecture re-initialised from seed).
        use_smp: segmentation-models-pytorch's U-Net for resnet18/resnet50/densenet121 (else ours everywhere).
    """

    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 8
    epochs: int | None = 50
    steps: int | None = None
    schedule: str = "constant"
    size: int | None = None
    loss: str = "dice_bce"
    encoder: str = "trained"
    warmup_epochs: int = 0
    patience: int | None = 10
    val_every: int | None = None
    holdout: float = 0.2
    augment: str = "flip"
    init: str = "pretrained"
    use_smp: bool = True
    bf16: bool = False
    deterministic: bool = True
    n_boot: int = 1000

    def __post_init__(self) -> None:
        choices = {"schedule": ("cosine", "constant"), "loss": LOSSES, "encoder": ("trained", "frozen"),
                   "augment": SEG_AUGMENTATIONS, "init": ("pretrained", "scratch")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                value = getattr(self, name)
                raise ConfigError(f"The {name!r} parameter of SegmentConfig must be one of {list(allowed)}. "
                                  f"Got {value!r} instead.{did_you_mean(str(value), list(allowed))}")
        if (self.epochs is None) == (self.steps is None):
            raise ConfigError(f"SegmentConfig needs exactly one of 'epochs' and 'steps'. Got "
                              f"epochs={self.epochs!r}, steps={self.steps!r}.")
        for name in ("batch_size", "epochs", "steps", "patience", "val_every", "size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"The {name!r} parameter of SegmentConfig must be an int in the range [1, inf). "
                                  f"Got {value!r} instead.")
        if not 0.0 < self.holdout < 1.0 or self.lr <= 0.0 or self.warmup_epochs < 0:
            raise ConfigError(f"SegmentConfig needs 0 < holdout < 1, lr > 0 and warmup_epochs >= 0. Got holdout="
                              f"{self.holdout!r}, lr={self.lr!r}, warmup_epochs={self.warmup_epochs!r}.")


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "hosseinzadeh2021": {"batch_size": 32, "epochs": 200, "schedule": "cosine", "patience": 20, "size": 224,
                         "loss": "dice", "augment": "hosseinzadeh2021"},
    "taleb2020": {"batch_size": 2, "epochs": 400, "warmup_epochs": 25, "loss": "weighted_dice", "patience": None},
}
# Hosseinzadeh Taher et al. train DRIVE with BCE at 512 px (Montgomery and SIIM with Dice at 224)
DATASET_PRESETS: dict[tuple[str, str], dict[str, Any]] = {("hosseinzadeh2021", "drive"): {"size": 512, "loss": "bce"}}


def resolve_config(preset: str = "default", *, dataset: str | None = None, **overrides: Any) -> SegmentConfig:
    """A preset (with its dataset-specific values for `dataset`) and `overrides`, strict keys."""
    values = preset_values("segment", PRESETS, preset, overrides, DATASET_PRESETS.get((preset, dataset or ""), {}))
    return from_dict(SegmentConfig, values, where=f"segment options (preset {preset!r})")
