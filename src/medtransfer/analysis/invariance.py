"""Invariance of features to synthetic transforms and across views (PROTOCOLS.md §1.9, after ssl-invariances).

For an image x and a transform setting t: the cosine similarity of ``(mu - f(x)) L`` and ``(mu - f(t x)) L``, L the
Cholesky factor of the inverse feature covariance (the cosine in the whitened space), and the Mahalanobis distance
between f(x) and f(t x). Both are averaged over images (NaN-aware), then over the k settings, the identity included.
Transforms act on the stored uint8 image, before the model card's preprocessing (as the reference transforms the PIL
image before Resize/CenterCrop/normalise); a volume is transformed slice by slice (in-plane). The copies of all images
under one setting go through the model in batches.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import nn

from medtransfer.analysis import sample_index
from medtransfer.data.base import ImageDataset
from medtransfer.errors import ConfigError, DataError
from medtransfer.registry import did_you_mean

COV_EPS = 1e-6  # added to the covariance's diagonal, as the reference
COV_IMAGES = 1000  # the reference's floor for the covariance sample


# ---------------------------------------------------------------- statistics of the feature space


@dataclass(frozen=True)
class Whitening:
    """Mean, inverse covariance and its Cholesky factor (Σ⁻¹ = L Lᵀ) of a feature space, from `n` images."""

    mean: np.ndarray
    precision: np.ndarray
    chol: np.ndarray
    n: int

    @classmethod
    def fit(cls, features: np.ndarray, *, seed: int = 0, eps: float = COV_EPS) -> Whitening:
        """From features (N, D): all of them when N < 1000, else a seeded sample with replacement of max(1000,
        N/10) rows (the reference's rule); unbiased covariance + eps·I. Warns when N <= D (a singular covariance
        that only eps keeps invertible)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise DataError(f"Whitening needs features (N, D) of at least 2 images; got shape {x.shape}.")
        n, d = x.shape
        if n >= COV_IMAGES:
            x = x[np.random.default_rng(seed).integers(0, n, max(COV_IMAGES, n // 10))]
        if len(x) <= d:
            warnings.warn(f"The feature covariance comes from {len(x)} images for {d} feature dimensions: it is "
                          f"singular and only the {eps:g}·I jitter makes it invertible, so whitened distances are "
                          f"dominated by the jitter. Use at least {d + 1} images (the reference uses >= "
                          f"{COV_IMAGES}).", stacklevel=2)
        cov = np.cov(x, rowvar=False).reshape(d, d) + eps * np.eye(d)
        precision = np.linalg.inv(cov)
        precision = (precision + precision.T) / 2
        try:
            chol = np.linalg.cholesky(precision)
        except np.linalg.LinAlgError as e:
            raise DataError(f"The inverse feature covariance of {len(x)} images is not positive definite in float64 "
                            f"({d} dimensions); use more images or a larger eps.") from e
        return cls(mean=x.mean(axis=0), precision=precision, chol=chol, n=len(x))


def whitened_cosine(a: np.ndarray, b: np.ndarray, w: Whitening) -> np.ndarray:
    """Row-wise cos((mu - a) L, (mu - b) L) of features (N, D)."""
    za = (w.mean - np.asarray(a, np.float64)) @ w.chol
    zb = (w.mean - np.asarray(b, np.float64)) @ w.chol
    denom = np.linalg.norm(za, axis=1) * np.linalg.norm(zb, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("nd,nd->n", za, zb) / denom


def mahalanobis(a: np.ndarray, b: np.ndarray, w: Whitening) -> np.ndarray:
    """Row-wise sqrt((a - b) Σ⁻¹ (a - b)ᵀ) (scipy.spatial.distance.mahalanobis per row)."""
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) @ w.chol
    return np.sqrt(np.einsum("nd,nd->n", d, d))


# ---------------------------------------------------------------- transforms and their settings


def _grid(k: int, lo: float, hi: float) -> list[float]:
    return [float(v) for v in np.linspace(lo, hi, k)]


def _side(k: int, power: float) -> int:
    """int(k ** power) as the reference takes it (8 -> 2 for a square root), exact for perfect powers."""
    return max(1, int(k ** power + 1e-9))


def _affine(x: torch.Tensor, **kw: Any) -> torch.Tensor:
    base = {"angle": 0.0, "translate": [0.0, 0.0], "scale": 1.0, "shear": [0.0, 0.0]}
    return TF.affine(x, **{**base, **kw}, interpolation=TF.InterpolationMode.BILINEAR)


def _translate(x: torch.Tensor, p: tuple[float, float]) -> torch.Tensor:
    h, w = x.shape[-2:]
    return _affine(x, translate=[p[0] * w, p[1] * h])


def _resized_crop(x: torch.Tensor, p: tuple[float, float, float, float]) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left, height, width = p
    return TF.resized_crop(x, round(top * h), round(left * w), max(1, round(height * h)), max(1, round(width * w)),
                           [h, w], antialias=True)


def _grey(x: torch.Tensor, on: bool) -> torch.Tensor:
    if not on or x.shape[-3] == 1:
        return x  # a grey image is its own greyscale
    return TF.rgb_to_grayscale(x, num_output_channels=x.shape[-3])


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    kernel = min(23, 2 * (min(x.shape[-2:]) // 2) - 1)  # the reference's 23, shrunk to fit small images
    return TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])


def _elastic(x: torch.Tensor, p: tuple[float, int]) -> torch.Tensor:
    """Elastic deformation: a Gaussian-smoothed uniform field (sigma in pixels of a 256-px image, scaled), one per
    setting, seeded by the setting (the same for every image), rescaled so its largest displacement is
    `ELASTIC_PEAK` of the image side. (Smoothing alone leaves a sub-pixel field at these sigmas: albumentations'
    visible warp comes from its affine part.)"""
    sigma, draw = p
    h, w = x.shape[-2:]
    scale = min(h, w) / 256.0
    g = torch.Generator().manual_seed(draw)
    field = torch.rand(2, h, w, generator=g) * 2 - 1
    s = max(sigma * scale, 1e-3)
    kernel = min(2 * int(math.ceil(3 * s)) + 1, 2 * (min(h, w) // 2) - 1)
    field = TF.gaussian_blur(field[:, None], [kernel, kernel], [s, s])[:, 0]
    field = field / field.abs().amax().clamp_min(1e-12)  # peak 1, then ELASTIC_PEAK of the side in pixels
    peak = ELASTIC_PEAK * min(h, w)
    displacement = torch.stack([field[0] * peak * 2 / w, field[1] * peak * 2 / h], dim=-1)[None]
    return TF.elastic(x, displacement, interpolation=TF.InterpolationMode.BILINEAR)


@dataclass(frozen=True)
class Transform:
    """A synthetic transform: the settings for k points (the identity among them) and how to apply one."""

    name: str
    default_k: int
    settings: Callable[[int], list[Any]]
    apply: Callable[[torch.Tensor, Any], torch.Tensor]


def _square_grid(k: int, lo: float, hi: float) -> list[tuple[float, float]]:
    """ssl-invariances' grid: n = int(sqrt(k)) points linspace(lo, hi, n + 1)[:n] per axis, so (0, 0) is in it."""
    n = _side(k, 0.5)
    side = [float(v) for v in np.linspace(lo, hi, n + 1)[:n]]
    return [(a, b) for a in side for b in side]


def _crop_grid(k: int) -> list[tuple[float, float, float, float]]:
    n = _side(k, 0.25)
    tl, hw = _grid(n, 0.0, 0.25), _grid(n, 0.75, 0.25)
    return [(t, left, h, w) for t in tl for left in tl for h in hw for w in hw if t + h <= 1 and left + w <= 1]


_SHIFT = (1 - 224 / 256) / 2  # the reference's ±16 px of 256
ELASTIC_PEAK = 0.05  # largest elastic displacement, as a share of the image side (13 px at 256)


TRANSFORMS: dict[str, Transform] = {t.name: t for t in [
    Transform("rotation", 256, lambda k: [float(a) for a in np.linspace(0, 360, k + 1)[:k]],
              lambda x, a: TF.rotate(x, a, interpolation=TF.InterpolationMode.BILINEAR)),
    Transform("translation", 256, lambda k: _square_grid(k, -_SHIFT, _SHIFT), _translate),
    Transform("scale", 256, lambda k: _grid(k, 0.25, 2.0), lambda x, s: _affine(x, scale=s)),
    Transform("shear", 256, lambda k: _square_grid(k, -160.0, 160.0), lambda x, s: _affine(x, shear=list(s))),
    Transform("resized_crop", 256, _crop_grid, _resized_crop),
    Transform("h_flip", 2, lambda k: [False, True][:k], lambda x, on: TF.horizontal_flip(x) if on else x),
    Transform("v_flip", 2, lambda k: [False, True][:k], lambda x, on: TF.vertical_flip(x) if on else x),
    Transform("grayscale", 2, lambda k: [False, True][:k], _grey),
    Transform("invert", 2, lambda k: [False, True][:k], lambda x, on: TF.invert(x) if on else x),
    Transform("equalize", 2, lambda k: [False, True][:k], lambda x, on: TF.equalize(x) if on else x),
    Transform("brightness", 256, lambda k: _grid(k, 0.25, 5.0), TF.adjust_brightness),
    Transform("contrast", 256, lambda k: _grid(k, 0.25, 5.0), TF.adjust_contrast),
    Transform("saturation", 256, lambda k: _grid(k, 0.25, 5.0), TF.adjust_saturation),  # a no-op on grey images
    Transform("hue", 256, lambda k: _grid(k, -0.5, 0.5), TF.adjust_hue),  # a no-op on grey images
    Transform("blur", 256, lambda k: _grid(k, 1e-5, 20.0), _blur),
    Transform("sharpness", 256, lambda k: _grid(k, 1.0, 30.0), TF.adjust_sharpness),
    Transform("posterize", 7, lambda k: list(range(1, 8))[:k], TF.posterize),
    Transform("deform", 8, lambda k: [(float(s), i) for i, s in enumerate(np.resize(np.linspace(10, 50, 8), k))],
              _elastic),
]}


def transform_names() -> list[str]:
    return list(TRANSFORMS)


def get_transform(name: str) -> Transform:
    if name not in TRANSFORMS:
        raise ConfigError(f"Unknown transform {name!r}; choose one of {list(TRANSFORMS)}."
                          f"{did_you_mean(name, list(TRANSFORMS))}")
    return TRANSFORMS[name]


def settings_of(name: str, k: int | None = None) -> list[Any]:
    """The transform's settings for `k` points (its reference default when None)."""
    t = get_transform(name)
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ConfigError(f"The 'k' of transform {name!r} must be a positive int (settings per transform). "
                          f"Got {k!r} instead.")
    return t.settings(t.default_k if k is None else k)


def apply(name: str, images: np.ndarray, setting: Any) -> np.ndarray:
    """Transform uint8 channels-last images (N, H, W, C) or volumes (N, D, H, W, C, slice by slice) under one
    setting; uint8 channels-last out, same shape."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim not in (4, 5):
        raise DataError(f"Transforms take uint8 images (N, H, W, C) or volumes (N, D, H, W, C); got {arr.dtype} "
                        f"{arr.shape}.")
    t = torch.from_numpy(np.ascontiguousarray(arr)).movedim(-1, -3)  # (..., C, H, W)
    lead = t.shape[:-3]
    out = get_transform(name).apply(t.reshape(-1, *t.shape[-3:]), setting)
    return out.reshape(*lead, *out.shape[-3:]).movedim(-3, -1).contiguous().numpy()


# ---------------------------------------------------------------- the analysis


@dataclass(frozen=True)
class InvarianceResult:
    """Invariance of one model's features to one transform (or between two views).

    Attributes:
        transform: the transform's name (``multi-view`` for view pairs).
        settings: the k settings, in order.
        cosine, mahalanobis: per setting, the NaN-mean over images.
        n_images: images per setting.
    """

    transform: str
    settings: list[Any]
    cosine: np.ndarray
    mahalanobis: np.ndarray
    n_images: int

    @property
    def mean_cosine(self) -> float:
        return float(np.mean(self.cosine))

    @property
    def mean_mahalanobis(self) -> float:
        return float(np.mean(self.mahalanobis))


def _features(model: nn.Module, images: np.ndarray, contract: Any, batch_size: int, device: torch.device) -> np.ndarray:
    from medtransfer.data.transforms import preprocess
    from medtransfer.features import forward_features

    kw = dataclasses.asdict(contract)
    parts = [forward_features(model, preprocess(images[lo:lo + batch_size], **kw), bf16=False, device=device)
             for lo in range(0, len(images), batch_size)]
    return np.concatenate(parts).astype(np.float64)


def invariance(model: nn.Module, dataset: ImageDataset, transform: str, stats: Whitening, *, k: int | None = None,
               **kwargs: Any) -> InvarianceResult:
    """Whitened cosine and Mahalanobis distance between f(x) and f(t x) for `n_images` seeded images of `dataset`
    and every setting t of `transform`; `stats` from `Whitening.fit` on the same model's features. Keyword
    arguments as `invariances`."""
    return invariances(model, dataset, [transform], stats, k={transform: k}, **kwargs)[transform]


def invariances(model: nn.Module, dataset: ImageDataset, transforms: Sequence[str], stats: Whitening, *,
                k: int | None | dict[str, int | None] = None, n_images: int = 100, seed: int = 0,
                batch_size: int = 64, device: str | torch.device | None = None,
                tick: Callable[[int], None] | None = None, input_size: int | None = None
                ) -> dict[str, InvarianceResult]:
    """`invariance` for each of `transforms` (names and settings checked before anything runs) on one seeded set
    of images, whose untransformed features are computed once. `k`: settings per transform, one for all or a
    mapping per transform (None: the transform's reference default)."""
    from medtransfer.features import default_device, resolve_contract, volume_batch_size

    ks = k if isinstance(k, dict) else {t: k for t in transforms}
    settings = {t: settings_of(t, ks.get(t)) for t in transforms}
    dev = default_device(device)
    model = model.eval().to(dev)
    contract = resolve_contract(model, input_size)
    batch_size = volume_batch_size(batch_size, dataset)  # at most VOXELS_PER_BATCH voxels per batch of volumes
    index = sample_index(len(dataset), n_images, seed)
    images = dataset.images(index)
    if not isinstance(images, np.ndarray):
        raise DataError(f"{dataset!r} holds images of different sizes; invariance transforms need one size. Load it "
                        "with a fixed size or use a model with an input_size.")
    base = _features(model, images, contract, batch_size, dev)
    if base.shape[1] != stats.mean.shape[0]:
        raise ConfigError(f"The whitening statistics have {stats.mean.shape[0]} dimensions but the model's features "
                          f"{base.shape[1]}: fit them on this model's features.")
    out = {}
    for t in transforms:
        cos, mah = np.empty(len(settings[t])), np.empty(len(settings[t]))
        for i, s in enumerate(settings[t]):
            f = _features(model, apply(t, images, s), contract, batch_size, dev)
            cos[i] = np.nanmean(whitened_cosine(base, f, stats))
            mah[i] = np.nanmean(mahalanobis(base, f, stats))
            if tick is not None:
                tick(len(index))
        out[t] = InvarianceResult(t, settings[t], cos, mah, len(index))
    return out


def multiview_invariance(model: nn.Module, view_a: ImageDataset, view_b: ImageDataset, stats: Whitening, *,
                         n_images: int = 100, seed: int = 0, batch_size: int = 64,
                         device: str | torch.device | None = None, input_size: int | None = None) -> InvarianceResult:
    """Whitened cosine and Mahalanobis distance between two views of the same subjects: row i of `view_a` and row i
    of `view_b` (a lateral and a frontal radiograph of one study, two eyes of one patient, two draws of a phantom)."""
    from medtransfer.features import default_device, resolve_contract, volume_batch_size

    if len(view_a) != len(view_b):
        raise DataError(f"Two views must pair row for row; {view_a!r} has {len(view_a)} rows and {view_b!r} "
                        f"{len(view_b)}.")
    dev = default_device(device)
    model = model.eval().to(dev)
    contract = resolve_contract(model, input_size)
    batch_size = volume_batch_size(batch_size, view_a)
    index = sample_index(len(view_a), n_images, seed)
    fa = _features(model, np.asarray(view_a.images(index)), contract, batch_size, dev)
    fb = _features(model, np.asarray(view_b.images(index)), contract, batch_size, dev)
    return InvarianceResult("multi-view", ["pair"], np.array([np.nanmean(whitened_cosine(fa, fb, stats))]),
                            np.array([np.nanmean(mahalanobis(fa, fb, stats))]), len(index))
