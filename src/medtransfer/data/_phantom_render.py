"""Private rendering of the phantoms: per-image parameters from uniform and normal draws, then pixels.

`phantoms.generate` draws the random numbers of each image, then calls `lesion_labels`, `build_scene` and
`render` here; everything below is a pure function of those draws and the config, vectorised over the batch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from medtransfer.data._phantom_config import PhantomConfig

# Anatomy in the body frame, axes (z, y, x); 2D uses (y, x). Organ centres and half-axes are in units of the
# body's half-axes, so organs keep their place when the body is jittered. Checked by Monte Carlo under +-15%
# axes and +-0.04 offsets: the organs never overlap and never leave the body.
_BODY_AXES = np.array([0.60, 0.58, 0.70])
_ORGAN_CENTRES = np.array([[0.0, 0.20, -0.46], [0.0, 0.20, 0.46], [0.0, -0.60, 0.0]])
_ORGAN_AXES = np.array([[0.45, 0.43, 0.31], [0.40, 0.36, 0.36], [0.38, 0.31, 0.38]])
_BODY_INTENSITY = 0.35
_ORGAN_INTENSITY = np.array([0.55, 0.65, 0.45])  # distinct, so the 'organ' task is decidable under rotation
TEXTURE_KNOTS = 6  # organ texture = random values on a 6-knot grid over the FOV, interpolated
# Per-image uniforms, label parameters first so that labels need no further draws: name -> (first, count).
_SLOTS = {"present": (0, 1), "host": (1, 1), "grade": (2, 1), "radius": (3, 1), "polarity": (4, 1),
          "contrast": (5, 1), "lesion_pos": (6, 3), "scale": (9, 1), "gain": (10, 1), "offset": (11, 1),
          "sigma": (12, 1), "shift": (13, 3), "body_axes": (16, 3), "organ_axes": (19, 9),
          "organ_offsets": (28, 9), "organ_gain": (37, 3), "bias_amp": (40, 1), "bias": (41, 9)}
N_UNIFORM, N_LABEL_UNIFORM, N_NORMAL = 50, 3, 7  # normals: rotation quaternion (4), lesion direction (3)


def _slot(u: np.ndarray, name: str, count: int | None = None) -> np.ndarray:
    """The uniforms of slot `name`: (B,) for a one-value slot, else (B, count)."""
    first, n = _SLOTS[name]
    return u[:, first] if n == 1 else u[:, first:first + (n if count is None else count)]


def _lerp(bounds: tuple[float, float], u: np.ndarray) -> np.ndarray:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def lesion_labels(u: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Presence, host organ, size grade and the task's label (all (B,)), from the label uniforms alone."""
    present = _slot(u, "present") < 0.5 if task == "binary" else np.ones(len(u), dtype=bool)
    host = np.minimum((_slot(u, "host") * 3).astype(np.int64), 2)
    grade = np.minimum((_slot(u, "grade") * 4).astype(np.int64), 3)
    return present, host, grade, {"binary": present.astype(np.int64), "organ": host, "grade": grade}[task]


@dataclass
class Scene:
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
    _, host, grade, _ = lesion_labels(u, "organ")
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


def _inside(scene: Scene, shape: tuple[np.ndarray, np.ndarray], grids: tuple[np.ndarray, ...],
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


def _bias_gain(scene: Scene, grids: tuple[np.ndarray, ...]) -> np.ndarray:
    """255 * gain * bias field, (B, *S): a product of per-axis quadratics 1 + a x + b x^2, a low-order
    polynomial with cross terms that costs one full-size pass."""
    col = (-1,) + (1,) * len(grids)
    field = scene.gain.astype(np.float32).reshape(col)
    for j, grid in enumerate(grids):
        a, b = (scene.bias[:, j, i].astype(np.float32).reshape(col) for i in (0, 1))
        field = field * (1 + (a + b * grid) * grid)  # (B, S, 1), then (B, S, S) at the last axis
    return field


def render(scene: Scene, texture: np.ndarray, noise: np.ndarray, cfg: PhantomConfig
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


def build_scene(u: np.ndarray, g: np.ndarray, cfg: PhantomConfig, present: np.ndarray, host: np.ndarray
                ) -> Scene:
    """The scene of a batch from its uniforms (B, 50), normals (B, 7), lesion presence and host organ (B,)."""
    m, c, s = _pose(u, g, cfg)
    lut, gain, bias, level, sigma = _appearance(u, cfg, host)
    return Scene(m, c, _anatomy(u, g, cfg, s), present, lut.astype(np.float32), gain, bias, level, sigma)

