"""Procedural phantoms: seeded 2D/3D medical-like images with masks, the default data that needs no network.

A body ellipse (ellipsoid in 3D) holds three textured organs (left, right, central), Shepp–Logan style; one
organ may hold a small lesion brighter or darker than itself. Pose, size, intensity, bias field and noise vary
per image, so a good representation must find the lesion through them. Image ``i`` depends only on
``(seed, task, split, i)``: any subset of a split renders to exactly the matching rows of the full split.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from medtransfer.config import config_hash, from_dict, to_dict
from medtransfer.data.base import DATASETS, DatasetCard, DatasetEntry, ImageDataset
from medtransfer.errors import ConfigError, DataError
from medtransfer.registry import did_you_mean

GENERATOR_VERSION = 1  # bump whenever the pixels that (cfg, task, split, seed, i) render to change
MASK_LABELS = ("background", "body", "left", "right", "central", "lesion")  # mask values 0..5
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
DEFAULT_N = {2: {"train": 2000, "val": 500, "test": 1000}, 3: {"train": 400, "val": 100, "test": 200}}
# task -> (card task type, label names, what the label means). A task's position is part of every image's
# random key, so tasks never share an image: append new tasks at the end.
TASKS: dict[str, tuple[Literal["binary", "multi-class", "ordinal"], tuple[str, ...], str]] = {
    "binary": ("binary", ("no-lesion", "lesion"), "label 1 when one organ holds a lesion (50%)"),
    "organ": ("multi-class", ("left", "right", "central"), "every image has a lesion; the label is the organ "
              "holding it, told apart by intensity and shape (not position: images rotate)"),
    "grade": ("ordinal", ("tiny", "small", "medium", "large"),
              "every image has a lesion; the label is its radius relative to its organ, in 4 bins"),
}

# Anatomy in the body frame, axes (z, y, x); 2D uses (y, x). Organ centres and half-axes are in units of the
# body's half-axes, so organs keep their place when the body is jittered. Checked by Monte Carlo under +-15%
# axes and +-0.04 offsets: the organs never overlap and never leave the body.
_BODY_AXES = np.array([0.60, 0.58, 0.70])
_ORGAN_CENTRES = np.array([[0.0, 0.20, -0.46], [0.0, 0.20, 0.46], [0.0, -0.60, 0.0]])
_ORGAN_AXES = np.array([[0.45, 0.43, 0.31], [0.40, 0.36, 0.36], [0.38, 0.31, 0.38]])
_BODY_INTENSITY = 0.35
_ORGAN_INTENSITY = np.array([0.55, 0.65, 0.45])  # distinct, so the 'organ' task is decidable under rotation
_TEXTURE_KNOTS = 6  # organ texture = random values on a 6-knot grid over the FOV, interpolated
_CHUNK_PIXELS = 1 << 18  # pixels rendered together: 1 MB float32 buffers stay in cache (best of 2^16..2^19)
# Per-image uniforms, label parameters first so that labels need no further draws: name -> (first, count).
_SLOTS = {"present": (0, 1), "host": (1, 1), "grade": (2, 1), "radius": (3, 1), "polarity": (4, 1),
          "contrast": (5, 1), "lesion_pos": (6, 3), "scale": (9, 1), "gain": (10, 1), "offset": (11, 1),
          "sigma": (12, 1), "shift": (13, 3), "body_axes": (16, 3), "organ_axes": (19, 9),
          "organ_offsets": (28, 9), "organ_gain": (37, 3), "bias_amp": (40, 1), "bias": (41, 9)}
_N_UNIFORM, _N_LABEL_UNIFORM, _N_NORMAL = 50, 3, 7  # normals: rotation quaternion (4), lesion direction (3)
# Allowed ranges: pairs (low, high) must satisfy lo <= low <= high <= hi; single floats lie in [0, hi].
_PAIR_BOUNDS = {"lesion_contrast": (0.0, 1.0), "lesion_radius": (0.05, 0.85), "scale": (0.5, 2.0),
                "intensity_scale": (0.1, 10.0), "intensity_offset": (-1.0, 1.0), "noise_sigma": (0.0, 1.0)}
_FLOAT_BOUNDS = {"translation": 0.25, "bias_field": 0.9, "shape_jitter": 0.15, "texture": 0.5}


def _fail(name: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"The {name!r} parameter of PhantomConfig must be {expected}. Got {value!r} instead.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class PhantomConfig:
    """How phantoms look. Lengths are in FOV half-widths (the FOV spans [-1, 1]); intensities in [0, 1].

    Ranges are pairs (low, high) drawn uniformly per image; `lesion_contrast` may also be a single float.
    """

    dims: int = 2
    size: int = 64
    # |lesion - organ| intensity. Organs differ by 0.1, texture and noise are 0.02-0.05: 0.08-0.2 keeps the
    # lesion visible to a reader (CNR ~1.5-8) yet below the image-wide intensity and bias variation.
    lesion_contrast: float | tuple[float, float] = (0.08, 0.2)
    # Both signs, 50/50: the lesion then shifts no global intensity statistic a pixel-linear model could use.
    lesion_polarity: Literal["both", "bright", "dark"] = "both"
    # Radius as a fraction of the host organ's smallest half-axis, so any lesion fits any organ; the 'grade'
    # task cuts this range into 4 equal bins. 0.25-0.75 gives radii of ~1.5-5 px at 64 px.
    lesion_radius: tuple[float, float] = (0.25, 0.75)
    translation: float = 0.1  # up to 10% of the FOV width (a shift in a ball of radius 0.2 units)
    rotate: bool = True  # full 360 degrees in 2D, a uniform random rotation in 3D
    scale: tuple[float, float] = (0.8, 1.2)
    intensity_scale: tuple[float, float] = (0.7, 1.3)  # window/level and scanner gain differences
    intensity_offset: tuple[float, float] = (-0.05, 0.05)
    bias_field: float = 0.3  # smooth multiplicative field up to about +-30%, like MR coil inhomogeneity
    noise_sigma: tuple[float, float] = (0.02, 0.05)
    shape_jitter: float = 0.15  # body and organ half-axes vary +-15% per image; more lets organs overlap
    texture: float = 0.03  # std of the smooth organ texture: as strong as the faintest lesions, on purpose

    def __post_init__(self) -> None:
        if isinstance(self.dims, bool) or self.dims not in (2, 3):
            raise _fail("dims", "2 or 3", self.dims)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 16 <= self.size <= 256:
            raise _fail("size", "an int in the range [16, 256]", self.size)
        if _is_number(self.lesion_contrast):
            object.__setattr__(self, "lesion_contrast", (self.lesion_contrast, self.lesion_contrast))
        for name, (lo, hi) in _PAIR_BOUNDS.items():
            v = getattr(self, name)
            pair = isinstance(v, (tuple, list)) and len(v) == 2 and all(map(_is_number, v))
            if not pair or not lo <= v[0] <= v[1] <= hi:
                raise _fail(name, f"a pair (low, high) with {lo} <= low <= high <= {hi}", v)
            object.__setattr__(self, name, (float(v[0]), float(v[1])))  # lists, ints -> float tuples
        if self.lesion_polarity not in ("both", "bright", "dark"):
            raise _fail("lesion_polarity", "one of ['both', 'bright', 'dark']", self.lesion_polarity)
        if not isinstance(self.rotate, bool):
            raise _fail("rotate", "a bool", self.rotate)
        for name, hi in _FLOAT_BOUNDS.items():
            if not _is_number(getattr(self, name)) or not 0 <= getattr(self, name) <= hi:
                raise _fail(name, f"a float in the range [0, {hi}]", getattr(self, name))


def _check_args(index: Any, task: str, split: str, seed: int) -> np.ndarray:
    """`index` as a 1-D int64 array; raise naming the bad argument of `generate` or `draw_labels`."""
    if task not in TASKS:
        raise ConfigError(f"Unknown phantom task {task!r}; choose one of {list(TASKS)}."
                          f"{did_you_mean(task, list(TASKS))}")
    if split not in SPLIT_IDS:
        raise ConfigError(f"Unknown phantom split {split!r}; choose one of {list(SPLIT_IDS)}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"The phantom seed must be a non-negative int. Got {seed!r} instead.")
    arr = np.asarray(index)
    if arr.ndim != 1 or (arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0)):
        raise DataError(f"Phantom indices must be a 1-D array of non-negative ints (e.g. np.arange(8)). "
                        f"Got dtype {arr.dtype}, shape {arr.shape} instead.")
    return arr.astype(np.int64)


def _rngs(index: np.ndarray, task: str, split: str, seed: int) -> Iterator[np.random.Generator]:
    """One generator per image, keyed by (seed, task, split, i) alone: the root of per-index determinism."""
    key = [int(seed), list(TASKS).index(task), SPLIT_IDS[split]]
    return (np.random.default_rng([*key, int(i)]) for i in index)


def _slot(u: np.ndarray, name: str, count: int | None = None) -> np.ndarray:
    """The uniforms of slot `name`: (B,) for a one-value slot, else (B, count)."""
    first, n = _SLOTS[name]
    return u[:, first] if n == 1 else u[:, first:first + (n if count is None else count)]


def _lerp(bounds: tuple[float, float], u: np.ndarray) -> np.ndarray:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _lesion_labels(u: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Presence, host organ, size grade and the task's label (all (B,)), from the label uniforms alone."""
    present = _slot(u, "present") < 0.5 if task == "binary" else np.ones(len(u), dtype=bool)
    host = np.minimum((_slot(u, "host") * 3).astype(np.int64), 2)
    grade = np.minimum((_slot(u, "grade") * 4).astype(np.int64), 3)
    return present, host, grade, {"binary": present.astype(np.int64), "organ": host, "grade": grade}[task]


def draw_labels(index: Any, *, task: str, split: str, seed: int) -> np.ndarray:
    """Labels (B,) int64 of the images at `index`, without rendering (labels do not depend on the config)."""
    index = _check_args(index, task, split, seed)
    u = np.zeros((len(index), _N_UNIFORM))
    for b, rng in enumerate(_rngs(index, task, split, seed)):
        u[b, :_N_LABEL_UNIFORM] = rng.random(_N_LABEL_UNIFORM)  # the first draws of the full stream
    return _lesion_labels(u, task)[3]


@dataclass
class _Scene:
    """Per-image parameters of a batch; (map_, offset) take image coordinates x to the body frame M x + c."""

    map_: np.ndarray  # (B, d, d)
    offset: np.ndarray  # (B, d)
    shapes: list[tuple[np.ndarray, np.ndarray]]  # (centre (B, d), half-axes (B, d)): body, 3 organs, lesion
    present: np.ndarray  # (B,) bool
    lut: np.ndarray  # (B, 6) intensity of each mask value
    gain: np.ndarray  # (B,) 255 * intensity scale
    bias: np.ndarray  # (B, d, 2) linear and square coefficient of each axis' bias factor
    level: np.ndarray  # (B,) 255 * offset + 0.5 (rounding)
    sigma: np.ndarray  # (B,) 255 * noise std


def _rotation(g: np.ndarray, dims: int) -> np.ndarray:
    """Uniform random rotations (B, d, d) from unit quaternions; in 2D (w, x, 0, 0) turns the (y, x) plane.

    Arithmetic and sqrt only (no libm/SIMD paths that differ by position), so rows are bit-exact in any batch.
    """
    q = g[:, :4] if dims == 3 else np.column_stack([g[:, :2], np.zeros((len(g), 2))])
    w, x, y, z = (q / np.sqrt((q ** 2).sum(1, keepdims=True))).T  # (B,) each
    rot = np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
                    np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
                    np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], 1)
    return rot[:, -dims:, -dims:]


def _pose(u: np.ndarray, g: np.ndarray, cfg: PhantomConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse pose p = M x + c (image -> body frame) and the scale s, of the pose x = s R p + t."""
    d = cfg.dims
    rot = _rotation(g, d) if cfg.rotate else np.broadcast_to(np.eye(d), (len(u), d, d))  # (B, d, d)
    s = _lerp(cfg.scale, _slot(u, "scale"))  # (B,)
    v = 2 * _slot(u, "shift", d) - 1  # (B, d), pulled into the unit ball below
    t = 2 * cfg.translation * v / np.maximum(1.0, np.sqrt((v ** 2).sum(1)))[:, None]  # the FOV is 2 wide
    m = np.swapaxes(rot, 1, 2) / s[:, None, None]  # (B, d, d)
    return m, -sum(m[:, :, j] * t[:, j, None] for j in range(d)), s


def _anatomy(u: np.ndarray, g: np.ndarray, cfg: PhantomConfig, s: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """Centres and half-axes (B, d) of body, three organs and lesion, in the body frame."""
    d, b = cfg.dims, len(u)

    def unit(name: str) -> np.ndarray:  # (B, k, d) in [-1, 1]: the slot's (z, y, x) triples, last d axes
        return 2 * _slot(u, name).reshape(b, -1, 3)[..., -d:] - 1
    body = _BODY_AXES[-d:] * (1 + cfg.shape_jitter * unit("body_axes")[:, 0])  # (B, d)
    centres = (_ORGAN_CENTRES[:, -d:] + 0.04 * unit("organ_offsets")) * body[:, None]  # (B, 3, d)
    axes = _ORGAN_AXES[:, -d:] * body[:, None] * (1 + cfg.shape_jitter * unit("organ_axes"))  # (B, 3, d)
    _, host, grade, _ = _lesion_labels(u, "organ")
    hc, ha = centres[np.arange(b), host], axes[np.arange(b), host]  # (B, d)
    frac = _lerp(cfg.lesion_radius, (grade + _slot(u, "radius")) / 4)  # the grade is the quarter of the range
    r = np.maximum(frac * ha.min(1), 0.9 * (2 / cfg.size) / s)  # (B,) >= 0.9 px, so some pixel is always hit
    direction = g[:, 4:4 + d] / np.sqrt((g[:, 4:4 + d] ** 2).sum(1, keepdims=True))
    # |centre| <= 0.85 - r/a in organ units leaves 0.15 half-axes between the lesion and the organ's edge.
    reach = np.maximum(0.85 - r / ha.min(1), 0) * _slot(u, "lesion_pos", d).max(1)
    lesion = (hc + ha * direction * reach[:, None], np.repeat(r[:, None], d, 1))
    return [(np.zeros_like(body), body), *((centres[:, k], axes[:, k]) for k in range(3)), lesion]


def _appearance(u: np.ndarray, cfg: PhantomConfig, host: np.ndarray) -> tuple[np.ndarray, ...]:
    """Intensity table (B, 6), gain (B,), bias coefficients (B, d, 2), level (B,) and noise sigma (B,)."""
    b, d = len(u), cfg.dims
    organs = _ORGAN_INTENSITY + 0.02 * (2 * _slot(u, "organ_gain") - 1)  # (B, 3)
    sign = {"both": np.where(_slot(u, "polarity") < 0.5, -1.0, 1.0), "bright": 1.0, "dark": -1.0}
    contrast = sign[cfg.lesion_polarity] * _lerp(cfg.lesion_contrast, _slot(u, "contrast"))  # (B,)
    lesion = organs[np.arange(b), host] + contrast
    lut = np.column_stack([np.zeros(b), np.full(b, _BODY_INTENSITY), organs, lesion])  # (B, 6)
    coef = 2 * _slot(u, "bias", 2 * d).reshape(b, d, 2) - 1  # (B, d, 2); a factor is within 1 +- bias_field/d
    coef *= (cfg.bias_field * _slot(u, "bias_amp") / d)[:, None, None] / np.abs(coef).sum(2, keepdims=True)
    gain = 255 * _lerp(cfg.intensity_scale, _slot(u, "gain"))  # (B,)
    level = 255 * _lerp(cfg.intensity_offset, _slot(u, "offset")) + 0.5
    return lut, gain, coef, level, 255 * _lerp(cfg.noise_sigma, _slot(u, "sigma"))


@functools.lru_cache(maxsize=8)
def _grids(size: int, dims: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Pixel-centre coordinates in [-1, 1], one (1, S, 1, ..) array per axis, and the last axis at full size
    (1, S, .., S): full-size passes on contiguous memory run 2x faster than on two broadcast operands."""
    c = ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)
    grids = tuple(c.reshape((1,) + tuple(size if k == j else 1 for k in range(dims))) for j in range(dims))
    last = np.ascontiguousarray(np.broadcast_to(grids[-1], (1,) + (size,) * dims))
    for grid in (*grids, last):
        grid.flags.writeable = False  # cached and shared
    return grids, last


def _inside(scene: _Scene, shape: tuple[np.ndarray, np.ndarray], grids: tuple[np.ndarray, ...],
            last: np.ndarray) -> np.ndarray:
    """Mask (B, *S) of the pixels inside an ellipse or ellipsoid given in the body frame."""
    centre, axes = shape
    coef = (scene.map_ / axes[:, :, None]).astype(np.float32)  # (B, d, d): row k scaled by 1 / half-axis k
    const = ((scene.offset - centre) / axes).astype(np.float32)  # (B, d)
    col, total = (-1,) + (1,) * len(grids), None
    for k in range(len(grids)):  # t_k = const_k + sum_j coef_kj x_j, the k-th normalised coordinate
        small = const[:, k].reshape(col)
        for j, grid in enumerate(grids[:-1]):
            small = small + coef[:, k, j].reshape(col) * grid  # (B, S, 1) in 2D: all but the last axis
        t = coef[:, k, -1].reshape(col) * last  # (B, *S): the only full-size passes
        t += small
        np.multiply(t, t, out=t)
        total = t if total is None else np.add(total, t, out=total)
    return total <= 1


def _upsample(low: np.ndarray, size: int) -> np.ndarray:
    """Multilinear interpolation of (B, K, .., K) knots spanning the FOV to (B, S, .., S), axis by axis."""
    k = low.shape[1]
    pos = ((np.arange(size) + 0.5) / size * (k - 1)).astype(np.float32)
    i0 = np.minimum(pos.astype(np.int64), k - 2)  # knot interval of each pixel, non-decreasing
    counts, w = np.bincount(i0, minlength=k - 1), pos - i0
    out = low.astype(np.float32)
    for ax in range(low.ndim - 1, 0, -1):  # last axis first: the early passes run on small arrays
        # `repeat` over the sorted intervals equals take(i0) but runs at memcpy speed (4x faster).
        start = np.repeat(np.delete(out, -1, axis=ax), counts, axis=ax)
        out = np.repeat(np.diff(out, axis=ax), counts, axis=ax)
        out *= w.reshape([size if i == ax else 1 for i in range(low.ndim)])
        out += start
    return out


def _bias_gain(scene: _Scene, grids: tuple[np.ndarray, ...]) -> np.ndarray:
    """255 * gain * bias field, (B, *S): a product of per-axis quadratics 1 + a x + b x^2, a low-order
    polynomial with cross terms that costs one full-size pass."""
    col = (-1,) + (1,) * len(grids)
    field = scene.gain.astype(np.float32).reshape(col)
    for j, grid in enumerate(grids):
        a, b = (scene.bias[:, j, i].astype(np.float32).reshape(col) for i in (0, 1))
        field = field * (1 + (a + b * grid) * grid)  # (B, S, 1), then (B, S, S) at the last axis
    return field


def _render(scene: _Scene, texture: np.ndarray, noise: np.ndarray, cfg: PhantomConfig
            ) -> tuple[np.ndarray, np.ndarray]:
    """Images and masks (B, *S) uint8 of one batch, from unit texture knots and unit noise (B, S**d)."""
    (grids, last), col = _grids(cfg.size, cfg.dims), (-1,) + (1,) * cfg.dims
    # Shapes are painted with `maximum`, several times faster than `putmask`: mask values rise from body to
    # organs to lesion, so the inner shape wins.
    mask = _inside(scene, scene.shapes[0], grids, last).view(np.uint8)  # (B, *S) values of MASK_LABELS
    for value, shape in enumerate(scene.shapes[1:], start=2):
        inside = _inside(scene, shape, grids, last)
        if value == 5:
            inside &= scene.present.reshape(col)
        np.maximum(mask, inside.view(np.uint8) * np.uint8(value), out=mask)
    img = np.take(scene.lut.ravel(), mask + (np.arange(len(mask)) * 6).reshape(col))  # (B, *S) float32
    if cfg.texture > 0:
        texture = _upsample(texture * cfg.texture, cfg.size)  # (B, *S)
        texture *= mask >= 2  # organs and lesion only; a product is faster than a masked add
        img += texture
    img *= _bias_gain(scene, grids)
    noise = noise.reshape(mask.shape)  # (B, *S)
    noise *= scene.sigma.astype(np.float32).reshape(col)
    img += noise
    img += scene.level.astype(np.float32).reshape(col)
    return np.clip(img, 0, 255, out=img).astype(np.uint8), mask


def _draws(index: np.ndarray, cfg: PhantomConfig, task: str, split: str, seed: int) -> tuple[np.ndarray, ...]:
    """Uniforms (B, 50), normals (B, 7), texture knots (B, K, ..) and unit noise (B, S**d) of each image."""
    n = len(index)
    u, g = np.empty((n, _N_UNIFORM)), np.empty((n, _N_NORMAL))
    texture = np.empty((n,) + (_TEXTURE_KNOTS,) * cfg.dims)
    noise = np.empty((n, cfg.size ** cfg.dims), dtype=np.float32)
    for b, rng in enumerate(_rngs(index, task, split, seed)):  # a loop over images, never over pixels
        rng.random(out=u[b])  # noise comes last: image i has the same anatomy at every size
        rng.standard_normal(out=g[b])
        rng.standard_normal(out=texture[b])
        rng.standard_normal(out=noise[b], dtype=np.float32)
    return u, g, texture, noise


def generate(index: Any, cfg: PhantomConfig, *, task: str, split: str, seed: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render the phantoms at `index` (1-D non-negative ints), vectorised over the batch.

    Image i depends only on (seed, task, split, i): ``generate([5, 3], ...)`` equals rows 5 and 3 of
    ``generate(range(10), ...)``, and splits and tasks never share an image. `task` is a key of `TASKS`,
    `split` one of train/val/test, `seed` a non-negative int.

    Returns:
        images (B, H, W, 1) or (B, D, H, W, 1) uint8; masks (B, H, W) or (B, D, H, W) uint8 with the values of
        `MASK_LABELS`; labels (B,) int64.

    Examples:
        >>> images, masks, labels = generate([0, 1, 2], PhantomConfig(), task="binary", split="val", seed=0)
        >>> images.shape, masks.shape, labels.shape
        ((3, 64, 64, 1), (3, 64, 64), (3,))
    """
    index = _check_args(index, task, split, seed)
    n, spatial, step = len(index), (cfg.size,) * cfg.dims, max(1, _CHUNK_PIXELS // cfg.size ** cfg.dims)
    images, masks = np.empty((n, *spatial, 1), np.uint8), np.empty((n, *spatial), np.uint8)
    labels = np.empty(n, dtype=np.int64)
    for lo in range(0, n, step):
        u, g, texture, noise = _draws(index[lo:lo + step], cfg, task, split, seed)
        present, host, _, labels[lo:lo + step] = _lesion_labels(u, task)
        m, c, s = _pose(u, g, cfg)
        lut, gain, bias, level, sigma = _appearance(u, cfg, host)
        scene = _Scene(m, c, _anatomy(u, g, cfg, s), present, lut.astype(np.float32), gain, bias, level,
                       sigma)
        images[lo:lo + step, ..., 0], masks[lo:lo + step] = _render(scene, texture, noise, cfg)
    return images, masks, labels


class PhantomDataset(ImageDataset):
    """One split of a phantom task: labels drawn at construction (cheap), images and masks rendered when read,
    so a 100k-image split costs no memory until it is read. Built by `load_phantom` through the registry."""

    def __init__(self, card: DatasetCard, split: str, *, cfg: PhantomConfig, task: str, n: int,
                 seed: int = 0) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"The 'n' option of dataset {card.name!r} must be a positive int. "
                              f"Got {n!r} instead.")
        super().__init__(card, split, draw_labels(np.arange(n), task=task, split=split, seed=seed))
        self.cfg, self.task, self.seed = cfg, task, int(seed)

    def render(self, index: Any) -> tuple[np.ndarray, np.ndarray]:
        """Images and masks at `index` in one pass (`images` then `masks` would render twice)."""
        index = np.asarray(index)
        if index.size and np.max(index) >= len(self):
            raise DataError(f"Index {int(np.max(index))} is out of range for {self!r}; use indices in "
                            f"[0, {len(self)}).")
        images, masks, _ = generate(index, self.cfg, task=self.task, split=self.split, seed=self.seed)
        return images, masks

    def images(self, index: np.ndarray) -> np.ndarray:
        return self.render(index)[0]

    def masks(self, index: np.ndarray) -> np.ndarray:
        return self.render(index)[1]

    @property
    def fingerprint(self) -> str:
        return "phantom-" + config_hash({"cfg": to_dict(self.cfg), "task": self.task, "split": self.split,
                                         "seed": self.seed, "n": len(self), "version": GENERATOR_VERSION})


def load_phantom(card: DatasetCard, split: str, *, data_root: Any = None, n: int | None = None, seed: int = 0,
                 **cfg_overrides: Any) -> PhantomDataset:
    """The loader of every phantom entry; `cfg_overrides` are PhantomConfig fields (``lesion_contrast=0.1``).

    `data_root` is ignored: phantoms are generated, nothing is read from disk. `n` defaults to `DEFAULT_N`.
    """
    del data_root
    for key in ("dims", "size"):
        if key in cfg_overrides:
            raise ConfigError(f"The {key!r} of dataset {card.name!r} is fixed by its name; load a name of "
                              f"another size instead (e.g. 'phantom-binary-128', 'phantom3d-binary-64').")
    cfg = from_dict(PhantomConfig, {"dims": card.dims, "size": card.image_size, **cfg_overrides})
    n = DEFAULT_N[card.dims][split] if n is None else n
    return PhantomDataset(card, split, cfg=cfg, task=card.extra["task"], n=n, seed=seed)


def _register() -> None:
    """Register phantom-<task>[-<size>] (2D, 64 px default) and phantom3d-<task>[-<size>] (3D, 32 default)."""
    for task, (prefix, dims, sizes, default) in itertools.product(
            TASKS, (("phantom", 2, (28, 32, 64, 128), 64), ("phantom3d", 3, (28, 32, 64), 32))):
        task_type, label_names, meaning = TASKS[task]
        for name, size in ((f"{prefix}-{task}", default), *((f"{prefix}-{task}-{s}", s) for s in sizes)):
            card = DatasetCard(
                name=name, task=task_type, label_names=label_names, dims=dims, channels=1, image_size=size,
                metrics=("accuracy", "auc", "qw_kappa") if task == "grade" else ("accuracy", "auc"),
                default_metric="accuracy", has_masks=True, license="CC0-1.0 (generated)",
                source="generated by medtransfer", extra={"task": task, "version": GENERATOR_VERSION},
                description=f"Procedural {dims}D phantoms ({size} px): a body holding three organs under "
                            f"random pose, size, intensity, bias field and noise; {meaning}. Masks: "
                            f"0 background, 1 body, 2 left, 3 right, 4 central organ, 5 lesion.")
            DATASETS.add(name, DatasetEntry(card, load_phantom))


_register()
