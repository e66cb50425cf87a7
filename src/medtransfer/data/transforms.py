"""Batched preprocessing: uint8 channels-last arrays -> normalised float tensors, whole batches at once.

The parameters come from the MODEL's input contract (features.py passes them in); a protocol never chooses them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medtransfer.errors import DataError

_MODES_2D = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"}
_MODES_3D = {"bilinear": "trilinear", "bicubic": "trilinear", "nearest": "nearest"}


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, C) or (B, D, H, W, C) -> float (B, C, H, W) / (B, C, D, H, W) in [0, 1]; a tensor stays on
    its device."""
    t = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    t = t.movedim(-1, 1)  # (B, C, ...)
    return t.float().div_(255.0)


def match_channels(x: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Repeat grey to `in_chans` channels, or average RGB to one channel."""
    c = x.shape[1]
    if c == in_chans:
        return x
    if c == 1:
        return x.expand(-1, in_chans, *x.shape[2:])
    if in_chans == 1:
        return x.mean(dim=1, keepdim=True)
    raise DataError(f"Cannot map {c}-channel images to a model that takes {in_chans} channels.")


def resize_crop(x: torch.Tensor, size: int, *, crop_pct: float = 1.0, interpolation: str = "bilinear") -> torch.Tensor:
    """Resize the shorter side to ``size / crop_pct`` (all sides in 3D) and centre-crop ``size``."""
    spatial = x.shape[2:]
    scale_to = int(round(size / crop_pct))
    short = min(spatial)
    # torchvision's Resize(int): the shorter side becomes scale_to, the others int(s * scale_to / short).
    target = [scale_to if s == short else int(s * scale_to / short) for s in spatial]
    if list(spatial) != target:
        modes = _MODES_3D if x.dim() == 5 else _MODES_2D
        mode = modes[interpolation]
        kw = {} if mode == "nearest" else {"align_corners": False}
        if mode in ("bilinear", "bicubic"):
            kw["antialias"] = True  # as torchvision's Resize on tensors/PIL: no aliasing when shrinking
        x = F.interpolate(x, size=target, mode=mode, **kw)
    starts = [int(round((t - size) / 2.0)) for t in x.shape[2:]]  # torchvision center_crop offsets
    if any(s < 0 for s in starts):
        raise DataError(f"Cannot centre-crop {size} from an image of size {tuple(x.shape[2:])}.")
    slices = tuple(slice(s, s + size) for s in starts)
    out = x[(slice(None), slice(None), *slices)]
    return out.clamp_(0.0, 1.0) if interpolation == "bicubic" else out


def histogram_equalize(x: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Per-image histogram equalisation to 0-255, batched: CovidPrognosis's ``HistogramNormalize``.

    For each image (all channels together): a `bins`-bin histogram over its [min, max], the cumulative counts scaled
    to 255, and every value mapped by linear interpolation of that CDF at the left bin edges (``np.interp``: values
    past the last left edge map to 255). The MIMIC-CheXpert models were trained on this, not on mean/std input.

    Args:
        x: float (B, C, ...) images.

    Returns:
        float (B, C, ...) in [0, 255].
    """
    flat = x.reshape(len(x), -1).to(torch.float64)  # (B, P)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values  # (B, 1)
    width = (hi - lo) / bins
    flat_ok = width > 0
    safe = torch.where(flat_ok, width, torch.ones_like(width))
    pos = (flat - lo) / safe  # position in bin widths
    idx = pos.floor().clamp_(0, bins - 1).long()  # the last bin includes its right edge, as np.histogram's
    counts = torch.zeros(len(x), bins, dtype=torch.float64, device=x.device).scatter_add_(1, idx, torch.ones_like(flat))
    cdf = 255 * counts.cumsum(1) / counts.sum(1, keepdim=True)  # (B, bins)
    left = pos.floor().clamp_(0, bins - 1)
    frac = (pos - left).clamp_(0, 1)
    i = left.long()
    nxt = torch.gather(cdf, 1, (i + 1).clamp_(max=bins - 1))
    out = torch.gather(cdf, 1, i) + frac * (nxt - torch.gather(cdf, 1, i))
    out = torch.where(i >= bins - 1, torch.full_like(out, 255.0), out)  # past the last left edge
    out = torch.where(flat_ok, out, torch.full_like(out, 255.0))  # a constant image: numpy maps it to 255 too
    return out.to(x.dtype).reshape(x.shape)


def normalize(x: torch.Tensor, *, mean: Sequence[float], std: Sequence[float], normalization: str) -> torch.Tensor:
    """Normalise float images in [0, 1] (B, C, ...) as a model's input contract says: ``meanstd`` (per-channel
    mean/std), ``histeq`` (`histogram_equalize`, mean/std unused) or ``none``. Returns a new tensor for
    ``meanstd`` and ``histeq``, also when `x` is an expanded (grey -> RGB) view."""
    if normalization == "histeq":
        return histogram_equalize(x)
    if normalization == "meanstd":
        shape = (1, -1) + (1,) * (x.dim() - 2)
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(shape)
        return torch.sub(x, m).div_(s)
    return x


def preprocess(images: np.ndarray | Sequence[np.ndarray], *, input_size: int | None, crop_pct: float = 1.0,
               interpolation: str = "bilinear", mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.5,),
               in_chans: int = 3, normalization: str = "meanstd") -> torch.Tensor:
    """Prepare a batch for a model: to float, match channels, resize + centre-crop, normalise.

    Args:
        images: uint8 channels-last array (B, H, W, C) / (B, D, H, W, C), or a list of such images of
            differing sizes (each is resized on its own, then stacked).
        input_size: output side length; None keeps the stored size (all images must then agree).

    Returns:
        float32 (B, in_chans, S, S) or (B, in_chans, S, S, S).
    """
    if not isinstance(images, np.ndarray):
        if input_size is None and len({im.shape for im in images}) > 1:
            raise DataError("Images of different sizes need a model input_size to be resized to; this model keeps "
                            "the stored size (input_size=None). Pass input_size=<pixels>.")
        kw = dict(input_size=input_size, crop_pct=crop_pct, interpolation=interpolation, mean=mean, std=std,
                  in_chans=in_chans, normalization=normalization)
        return torch.cat([preprocess(im[None], **kw) for im in images])  # type: ignore[arg-type]
    if normalization not in ("meanstd", "none", "histeq"):
        raise DataError(f"Unknown normalization {normalization!r}; use 'meanstd', 'none' or 'histeq'.")
    x = to_tensor(images)
    if input_size is not None:  # resize before matching channels: a grey image is resized once, not three times
        x = resize_crop(x, input_size, crop_pct=crop_pct, interpolation=interpolation)
    x = match_channels(x, in_chans)
    x = normalize(x, mean=mean, std=std, normalization=normalization)
    # channels-last, the layout the model runs in (features.py), so no second copy happens before the forward
    return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
