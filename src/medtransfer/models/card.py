"""ModelCard: what a model is, where its weights come from, and the input it expects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from medtransfer.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputContract:
    """How images must be prepared for a model (timm's `pretrained_cfg` input fields).

    Attributes:
        input_size: side length fed to the model; None keeps the images at their stored size, as the
            small-image (28 px) stems of the MedMNIST benchmark expect.
        crop_pct: resize to ``input_size / crop_pct`` then centre-crop ``input_size`` (timm convention);
            1.0 resizes straight to ``input_size``.
        interpolation: ``bilinear``, ``bicubic`` or ``nearest`` (MedMNIST's "224" results upsample with nearest).
        mean, std: per-channel normalisation after scaling to [0, 1].
        in_chans: channels the model takes; grey images are repeated to 3, RGB averaged to 1.
        normalization: ``meanstd``; ``none`` (SimCLR checkpoints expect raw [0, 1] input); or ``histeq``, the
            256-bin histogram equalisation to 0-255 of CovidPrognosis's ``HistogramNormalize``, which the
            MIMIC-CheXpert models were trained with (mean/std are then unused).
    """

    input_size: int | None = 224
    crop_pct: float = 1.0
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    in_chans: int = 3
    normalization: Literal["meanstd", "none", "histeq"] = "meanstd"

    def __post_init__(self) -> None:
        if self.input_size is not None and not (8 <= self.input_size <= 1024):
            raise ConfigError(f"The 'input_size' parameter of InputContract must be an int in the range [8, 1024] "
                              f"or None. Got {self.input_size!r} instead.")
        if not (0.1 <= self.crop_pct <= 1.0):
            raise ConfigError(f"The 'crop_pct' parameter of InputContract must be a float in the range [0.1, 1]. "
                              f"Got {self.crop_pct!r} instead.")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ConfigError(f"InputContract: mean {self.mean} and std {self.std} need one value per input channel "
                              f"(in_chans={self.in_chans}).")


@dataclass(frozen=True)
class ModelCard:
    """A registered model: architecture + weights source + input contract + provenance.

    Attributes:
        name: registry name (``resnet18``, ``moco-v2`` ...).
        arch: architecture builder name in ``ARCHS``.
        feature_dim: length of the pooled feature vector the backbone returns.
        input: the preprocessing the weights expect.
        url: where the published weights are downloaded from; None for random initialisation, and for
            published files with no direct link (then `manual` says how to get them).
        sha256: the published file's sha256, in full or as a prefix of at least 8 hex digits (torchvision's
            file names carry one); None where no digest is published: the first verified file is then recorded
            in the lock file (``$MEDTRANSFER_HOME/models.lock.json``) and later files must match it.
        converter: name of the source-format converter (``medtransfer.models.convert.CONVERTERS``).
        filename: the published file's name (the download is stored under it; manual copies are looked up by it).
        manual: how to get the file by hand where it cannot be fetched (login, cloud console, TF checkpoint).
        init_seed: seed of the random initialisation when no weights are loaded, so "random init" is
            one fixed, reproducible model (and its features can be cached).
    """

    name: str
    arch: str
    feature_dim: int
    input: InputContract = field(default_factory=InputContract)
    dims: int = 2
    url: str | None = None
    sha256: str | None = None
    converter: str | None = None
    filename: str | None = None
    manual: str = ""
    init_seed: int = 0
    method: str = "random init"
    pretraining_data: str = "none"
    paper: str = ""
    license: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        sha = self.sha256
        if sha is not None and not (8 <= len(sha) <= 64 and all(c in "0123456789abcdef" for c in sha)):
            raise ConfigError(f"The 'sha256' parameter of ModelCard {self.name!r} must be 8 to 64 lower-case hex "
                              f"digits (a digest or its prefix) or None. Got {sha!r} instead.")
        if (self.url or self.manual) and self.converter is None:
            raise ConfigError(f"ModelCard {self.name!r} has a weights source but no 'converter'; name the source "
                              f"format (see medtransfer.models.convert.CONVERTERS).")

    @property
    def published(self) -> bool:
        """True when the card's weights are a published checkpoint (fetched or converted), not a random init."""
        return self.converter is not None
