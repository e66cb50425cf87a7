"""How phantoms look (`PhantomConfig`): below `phantoms` and its renderer, which both read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from medtransfer.errors import ConfigError

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
