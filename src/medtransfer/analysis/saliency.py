"""Occlusion saliency and attentive diffusion (Anton et al. 2022, PROTOCOLS.md §1.8).

A window of `baseline` (0 after normalisation, i.e. the dataset mean) slides over the prepared image; each position
scores ``||f(x) - f(x_occ)|| / ||f(x)||`` on the model's pooled features, and the score is added to every pixel under
the window, the sum divided by ``window**dims``. The reference runs the 233² occluded copies of a 242 px image one at a
time; here they go through the model in large batches, built by one broadcast mask per batch, and the accumulation is
one transposed convolution with a box kernel, in float64. ``stride > 1`` scores a coarse grid of positions (the last
position always included), interpolates the scores linearly onto every position, then accumulates them as above.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medtransfer.data.base import ImageDataset
from medtransfer.data.transforms import preprocess
from medtransfer.errors import ConfigError, DataError
from medtransfer.models.card import InputContract

# Anton et al.: images resized and centre-cropped to 242, a 10-px window, the map cropped to [9:233] (224 px): the
# pixels that every one of the 10 x 10 windows covering them could reach.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {"input_size": None, "window": None, "stride": 1, "crop": False},
    "anton2022": {"input_size": 242, "window": 10, "stride": 1, "crop": True},
}


def default_window(preset: str, side: int, window: int | None = None) -> int:
    """`window`, else the preset's, else a tenth of the image side (at least 2 px), as 10 px is of 242 px."""
    return window if window is not None else PRESETS[preset]["window"] or max(2, side // 10)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"The {name!r} of occlusion saliency must be a positive int (e.g. {name}=1). "
                          f"Got {value!r} instead.")
    return int(value)


def check_options(images_shape: Sequence[int], window: Any, stride: Any, model_dims: int | None) -> tuple[int, int]:
    """`window` and `stride` as ints after checking them against the image shape (N, C, *spatial) and the model."""
    window, stride = _positive_int("window", window), _positive_int("stride", stride)
    dims = len(images_shape) - 2
    if dims not in (2, 3):
        raise DataError(f"Occlusion saliency takes images (N, C, H, W) or volumes (N, C, D, H, W); got a tensor of "
                        f"shape {tuple(images_shape)}.")
    if model_dims is not None and model_dims != dims:
        raise ConfigError(f"A {model_dims}D model cannot explain {dims}D inputs: pass "
                          f"{'volumes (N, C, D, H, W)' if model_dims == 3 else 'images (N, C, H, W)'} to this model, "
                          f"or a {dims}D model for these inputs.")
    spatial = tuple(images_shape[2:])
    if window > min(spatial):
        raise ConfigError(f"The occlusion window ({window} px) is larger than the image {spatial}; use window <= "
                          f"{min(spatial)}.")
    return window, stride


def positions(size: int, window: int, stride: int) -> np.ndarray:
    """Window starts along one axis: every `stride`-th of 0..size-window, the last one always included."""
    starts = np.arange(0, size - window + 1, stride)
    return starts if starts[-1] == size - window else np.append(starts, size - window)


def _window_masks(starts: torch.Tensor, window: int, spatial: tuple[int, ...]) -> torch.Tensor:
    """(B, *spatial) bool: True under the window that starts at ``starts[b]`` (B, dims)."""
    mask = None
    for axis, size in enumerate(spatial):
        ar = torch.arange(size, device=starts.device)
        inside = (ar >= starts[:, axis, None]) & (ar < starts[:, axis, None] + window)  # (B, size)
        shape = [len(starts)] + [1] * len(spatial)
        shape[axis + 1] = size
        inside = inside.view(shape)
        mask = inside if mask is None else mask & inside
    assert mask is not None
    return mask


def _interpolate(scores: np.ndarray, coarse: Sequence[np.ndarray], fine: Sequence[np.ndarray]) -> np.ndarray:
    """Separable linear interpolation of a score grid from the `coarse` positions to the `fine` ones, per axis."""
    out = scores
    for axis, (c, f) in enumerate(zip(coarse, fine, strict=True)):
        if len(c) == len(f):
            continue
        last = np.moveaxis(out, axis, -1)  # interpolate along the last axis, row by row
        rows = np.stack([np.interp(f, c, v) for v in last.reshape(-1, len(c))])
        out = np.moveaxis(rows.reshape(*last.shape[:-1], len(f)), -1, axis)
    return out


def accumulate(scores: np.ndarray, window: int) -> np.ndarray:
    """Add each position's score to every pixel under its window, divided by ``window**dims`` (float64).

    `scores` holds one value per window start (size - window + 1 along each axis); the map has the image's size.
    """
    t = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float64))[None, None]
    dims = scores.ndim
    box = torch.ones((1, 1) + (window,) * dims, dtype=torch.float64)
    conv = F.conv_transpose2d if dims == 2 else F.conv_transpose3d
    return conv(t, box)[0, 0].numpy() / window ** dims


@torch.inference_mode()
def _scores(model: nn.Module, x: torch.Tensor, starts: torch.Tensor, window: int, baseline: float,
            batch_size: int, tick: Callable[[int], None] | None) -> np.ndarray:
    """||f(x) - f(x_occ)|| / ||f(x)|| for one image x (C, *spatial) at each window start (P, dims)."""
    fmt = torch.channels_last if x.dim() == 3 else torch.channels_last_3d
    f0 = model(x[None].contiguous(memory_format=fmt)).double()
    norm = f0.norm()
    if float(norm) == 0.0:
        raise DataError("The model's features of this image are all zero, so occlusion scores ||f(x) - f(x_occ)|| / "
                        "||f(x)|| are undefined; check the weights and the input.")
    out = np.empty(len(starts))
    for lo in range(0, len(starts), batch_size):
        chunk = starts[lo:lo + batch_size]
        occluded = torch.where(_window_masks(chunk, window, tuple(x.shape[1:]))[:, None], baseline, x[None])
        f = model(occluded.contiguous(memory_format=fmt)).double()
        out[lo:lo + len(chunk)] = ((f - f0).norm(dim=1) / norm).cpu().numpy()
        if tick is not None:
            tick(len(chunk))
    return out


def occlusion_map(model: nn.Module, images: torch.Tensor, window: int = 10, stride: int = 1, baseline: float = 0.0,
                  batch_size: int = 256, *, device: str | torch.device | None = None,
                  tick: Callable[[int], None] | None = None) -> np.ndarray:
    """Occlusion saliency of each image: (N, C, H, W) -> (N, H, W) float64 ((N, C, D, H, W) -> (N, D, H, W)).

    Args:
        model: returns pooled features (N, D) for a batch; put in eval mode here.
        images: prepared as the model card says (resized, normalised): occlusion is applied after normalisation.
        window: side of the square (cubic in 3D) occluder in pixels.
        stride: step between scored window positions; > 1 interpolates the scores linearly in between.
        baseline: the occluder's value (0 = the normalisation mean, as the reference).
        batch_size: occluded copies per forward (for volumes at most `features.VOXELS_PER_BATCH` voxels).
        tick: called with the number of occluded copies after each forward (progress).
    """
    from medtransfer.features import VOXELS_PER_BATCH, default_device

    card = getattr(model, "card", None)
    window, stride = check_options(tuple(images.shape), window, stride, getattr(card, "dims", None))
    batch_size = _positive_int("batch_size", batch_size)
    if images.dim() == 5:  # occluded volumes per forward capped as extraction caps them (a 3D net's memory)
        batch_size = max(1, min(batch_size, VOXELS_PER_BATCH // int(np.prod(images.shape[2:]))))
    dev = default_device(device)
    model = model.eval().to(dev)
    spatial = tuple(int(s) for s in images.shape[2:])
    coarse = [positions(s, window, stride) for s in spatial]
    fine = [np.arange(s - window + 1) for s in spatial]
    grid = np.stack(np.meshgrid(*coarse, indexing="ij"), axis=-1).reshape(-1, len(spatial))
    starts = torch.from_numpy(grid).to(dev)
    maps = []
    for x in images.float():
        s = _scores(model, x.to(dev), starts, window, float(baseline), batch_size, tick)
        s = _interpolate(s.reshape([len(c) for c in coarse]), coarse, fine)
        maps.append(accumulate(s, window))
    return np.stack(maps)


def attentive_diffusion(saliency: np.ndarray) -> float:
    """100 · (#pixels above the map's mean) / #pixels: how widely a model's attention spreads (low = focused)."""
    m = np.asarray(saliency, dtype=np.float64)
    span = float(m.max() - m.min()) if m.size else 0.0
    if span <= 1e-12 * max(float(np.abs(m).max(initial=0.0)), 1e-300):
        return 0.0  # a flat map: no pixel is above its mean (whatever the mean's last bit says)
    return 100.0 * float(np.count_nonzero(m > m.mean() + 1e-12 * span)) / m.size


def pointing_score(saliency: np.ndarray, region: np.ndarray) -> float:
    """Share of the saliency mass inside `region` (a bool mask of the map's shape): 1 = all of it there."""
    m, r = np.asarray(saliency, dtype=np.float64), np.asarray(region, dtype=bool)
    if m.shape != r.shape:
        raise DataError(f"The region mask has shape {r.shape} but the saliency map {m.shape}; resize the mask "
                        "to the map (nearest neighbour) first.")
    total = m.sum()
    return float(m[r].sum() / total) if total > 0 else float("nan")


def top_iou(a: np.ndarray, b: np.ndarray, share: float = 0.1) -> float:
    """IoU of the top-`share` pixels of two maps (ranks broken by pixel index, so ties cannot flip it)."""
    k = max(1, int(round(share * a.size)))

    def top(m: np.ndarray) -> np.ndarray:
        order = np.lexsort((np.arange(m.size), -m.ravel()))  # descending value, then ascending index
        out = np.zeros(m.size, dtype=bool)
        out[order[:k]] = True
        return out

    ta, tb = top(a), top(b)
    return float((ta & tb).sum() / (ta | tb).sum())


@dataclass(frozen=True)
class SaliencyResult:
    """Maps of some images of a dataset, with the numbers derived from them.

    Attributes:
        index: dataset rows explained.
        images: the images as the maps see them, (N, *spatial) float in [0, 1] (first channel), for overlays.
        maps: (N, *spatial) occlusion maps (cropped as the preset says).
        diffusion: attentive diffusion per image.
        pointing: share of saliency mass in the region of interest per image (NaN where an image has none);
            None when the dataset has no masks.
        settings: window, stride, baseline, input size, crop.
    """

    index: np.ndarray
    images: np.ndarray
    maps: np.ndarray
    diffusion: np.ndarray
    pointing: np.ndarray | None
    settings: dict[str, Any]


def region_of_interest(dataset: ImageDataset, index: np.ndarray) -> np.ndarray | None:
    """What a model should look at, (N, *spatial) bool, or None: the foreground of a segmentation dataset's masks, the
    lesion of a phantom's masks."""
    card = dataset.card
    if card.task == "segmentation":
        return np.asarray(dataset.masks(index)) > 0
    if card.has_masks and "task" in card.extra:  # phantoms: mask value 5 is the lesion
        from medtransfer.data.phantoms import MASK_LABELS

        return np.asarray(dataset.masks(index)) == MASK_LABELS.index("lesion")
    return None


def _resize_regions(regions: np.ndarray, contract: InputContract) -> np.ndarray:
    """Masks through the same resize + centre crop as the images (nearest neighbour)."""
    from medtransfer.data.transforms import resize_crop

    if contract.input_size is None:
        return regions
    t = torch.from_numpy(regions.astype(np.float32))[:, None]
    return resize_crop(t, contract.input_size, crop_pct=contract.crop_pct, interpolation="nearest")[:, 0].numpy() > 0.5


def saliency(model: nn.Module, dataset: ImageDataset, index: Sequence[int] | np.ndarray, *, preset: str = "default",
             window: int | None = None, stride: int | None = None, baseline: float = 0.0, batch_size: int = 256,
             input_size: int | None = None, device: str | torch.device | None = None,
             tick: Callable[[int], None] | None = None) -> SaliencyResult:
    """Occlusion maps of ``dataset`` rows `index`, prepared by the model card (input size from the preset when it
    names one), with attentive diffusion and, where the dataset has masks, the pointing score.

    The default window is a tenth of the image side (at least 2 px), as 10 px is of Anton et al.'s 242 px.
    `input_size` overrides the model card's (a preset's own input size comes first). A preset's crop keeps the pixels
    every window covering them can reach, [window - 1, size - window + 1), for whatever window is used.
    """
    from medtransfer.features import resolve_contract

    if preset not in PRESETS:
        raise ConfigError(f"Unknown saliency preset {preset!r}; choose one of {list(PRESETS)}.")
    p = PRESETS[preset]
    index = np.asarray(index, dtype=np.int64)
    if index.ndim != 1 or not len(index) or index.min() < 0 or index.max() >= len(dataset):
        raise DataError(f"Saliency indices must be a non-empty list of rows of {dataset!r} (0..{len(dataset) - 1}). "
                        f"Got {index.tolist()} instead.")
    contract = resolve_contract(model, p["input_size"] or input_size)
    x = preprocess(dataset.images(index), **dataclasses.asdict(contract))
    side = min(x.shape[2:])
    window = default_window(preset, side, window)
    stride = stride if stride is not None else p["stride"]
    maps = occlusion_map(model, x, window, stride, baseline, batch_size, device=device, tick=tick)
    shown = (x[:, 0] - x[:, 0].amin(dim=tuple(range(1, x.dim() - 1)), keepdim=True)).numpy()
    shown = shown / np.maximum(shown.reshape(len(x), -1).max(axis=1), 1e-12).reshape((-1,) + (1,) * (x.dim() - 2))
    regions = region_of_interest(dataset, index)
    if regions is not None:
        regions = _resize_regions(regions, contract)
    if p["crop"]:
        lo, hi = window - 1, side - window + 1  # (9, 233) for anton2022's window 10 at 242 px
        crop = (slice(None),) + (slice(lo, hi),) * (x.dim() - 2)
        maps, shown = maps[crop], shown[crop]
        regions = regions[crop] if regions is not None else None
    pointing = None
    if regions is not None:
        pointing = np.array([pointing_score(m, r) if r.any() else np.nan for m, r in zip(maps, regions, strict=True)])
    return SaliencyResult(index=index, images=shown.astype(np.float32), maps=maps,
                          diffusion=np.array([attentive_diffusion(m) for m in maps]), pointing=pointing,
                          settings={"preset": preset, "window": int(window), "stride": int(stride),
                                    "baseline": float(baseline), "input_size": contract.input_size,
                                    "crop": (window - 1, side - window + 1) if p["crop"] else None})
