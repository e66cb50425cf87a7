"""View augmentations as batched tensor ops: every sample draws its own parameters, no PIL, no Python loop.

The four 2D sequences are those of Freddy's SimCLR on MedMNIST (PROTOCOLS.md §2), on float images in [0, 1]
(B, 3, H, W):

- ``natural``: HFlip -> RandomResizedCrop -> ColorJitter(0.5, 0.5, 0.5, 0.1) p 0.8 -> RandomGrayscale 0.2 ->
  GaussianBlur(9)
- ``simple``: natural without the flip and the grayscale
- ``novel``: natural with ColorJitter(0.2, 0.2, 0.2, 0.04), then RandomEqualize (luma, p 0.5) and
  RandomAdjustSharpness (factor U(1, 10), p 0.5)
- ``greyscale``: novel without the colour jitter and the grayscale

Differences from torchvision, on purpose: the jitter's four adjustments run in a fixed order (torchvision
shuffles them), hue is rotated in YIQ space (torchvision goes through HSV), and the blur kernel is 9 px up to
32 px images and 10% of the side above (the SimCLR paper's rule), so larger images are blurred alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from medtransfer.errors import ConfigError
from medtransfer.registry import did_you_mean

Augment = Callable[[torch.Tensor], torch.Tensor]
_LUMA = (0.299, 0.587, 0.114)


def _u(n: int, lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(n, device=like.device).uniform_(lo, hi)  # (B,)


def _chance(n: int, p: float, like: torch.Tensor) -> torch.Tensor:
    return (torch.rand(n, device=like.device) < p).view(-1, *([1] * (like.dim() - 1)))  # (B, 1, ...)


def _grey(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)  # (B, 1, H, W)


def hflip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Flip each image left-right with probability `p`."""
    return torch.where(_chance(len(x), p, x), x.flip(-1), x)


def random_resized_crop(x: torch.Tensor, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Crop a random area share in `scale` with aspect ratio in `ratio` and resize it back (bilinear)."""
    b = len(x)
    area = _u(b, *scale, x)
    log_r = _u(b, math.log(ratio[0]), math.log(ratio[1]), x)
    w = torch.sqrt(area * log_r.exp()).clamp(max=1.0)  # (B,) crop width as a share of the image width
    h = torch.sqrt(area / log_r.exp()).clamp(max=1.0)
    cx = (torch.rand(b, device=x.device) * 2 - 1) * (1 - w)  # centre in normalised coords, crop stays inside
    cy = (torch.rand(b, device=x.device) * 2 - 1) * (1 - h)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _blend(a: torch.Tensor, b: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (b + f.view(-1, 1, 1, 1) * (a - b)).clamp(0.0, 1.0)  # f=1 keeps a, f=0 gives b


def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma of RGB images by ``shift * 2π`` in YIQ space."""
    m = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                     device=x.device, dtype=x.dtype)
    yiq = torch.einsum("ij,bjhw->bihw", m, x)
    c, s = torch.cos(shift * 2 * math.pi), torch.sin(shift * 2 * math.pi)
    i, q = yiq[:, 1], yiq[:, 2]
    c, s = c.view(-1, 1, 1), s.view(-1, 1, 1)
    yiq = torch.stack([yiq[:, 0], c * i - s * q, s * i + c * q], 1)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(m), yiq).clamp(0.0, 1.0)


def color_jitter(x: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float,
                 p: float = 0.8) -> torch.Tensor:
    """torchvision's ColorJitter (fixed order, YIQ hue), applied to each image with probability `p`."""
    b = len(x)
    y = (x * _u(b, 1 - brightness, 1 + brightness, x).view(-1, 1, 1, 1)).clamp(0.0, 1.0)
    y = _blend(y, _grey(y).mean((2, 3), keepdim=True).expand_as(y), _u(b, 1 - contrast, 1 + contrast, x))
    y = _blend(y, _grey(y).expand_as(y), _u(b, 1 - saturation, 1 + saturation, x))
    y = _hue(y, _u(b, -hue, hue, x))
    return torch.where(_chance(b, p, x), y, x)


def random_grayscale(x: torch.Tensor, p: float = 0.2) -> torch.Tensor:
    """Replace each image by its luma (repeated over the channels) with probability `p`."""
    return torch.where(_chance(len(x), p, x), _grey(x).expand_as(x), x)


def gaussian_blur(x: torch.Tensor, kernel: int, sigma: tuple[float, float] = (0.1, 2.0)) -> torch.Tensor:
    """Separable Gaussian blur, one sigma ~ U(`sigma`) per image, reflect padding (torchvision's GaussianBlur)."""
    b, c, h, w = x.shape
    r = torch.arange(kernel, device=x.device, dtype=x.dtype) - (kernel - 1) / 2
    s = _u(b, *sigma, x).to(x.dtype).view(-1, 1)
    k = torch.exp(-0.5 * (r / s) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, K): one kernel per image channel
    pad = kernel // 2
    y = F.pad(x.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, 1, kernel), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, kernel, 1), groups=b * c)
    return y.view(b, c, h, w)


def random_equalize(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Histogram-equalise each image's luma (YCbCr Y, chroma kept) with probability `p`."""
    b = len(x)
    luma = _grey(x)  # (B, 1, H, W)
    q = (luma * 255).round().long().clamp(0, 255).flatten(1)  # (B, HW)
    hist = torch.zeros(b, 256, device=x.device).scatter_add_(1, q, torch.ones_like(q, dtype=torch.float))
    cdf = hist.cumsum(1)
    cdf_min = torch.where(hist > 0, cdf, cdf.new_full((), float("inf"))).amin(1, keepdim=True)
    lut = ((cdf - cdf_min) / (cdf[:, -1:] - cdf_min).clamp(min=1)).clamp(0.0, 1.0)  # (B, 256)
    new = lut.gather(1, q).view_as(luma)
    y = (x + (new - luma)).clamp(0.0, 1.0)  # shifting R, G and B alike changes Y only, as in YCbCr
    return torch.where(_chance(b, p, x), y, x)


def random_sharpness(x: torch.Tensor, factor: tuple[float, float] = (1.0, 10.0), p: float = 0.5) -> torch.Tensor:
    """torchvision's adjust_sharpness with a factor ~ U(`factor`) per image, with probability `p`."""
    c = x.shape[1]
    k = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=x.device, dtype=x.dtype) / 13
    smooth = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(c, 1, 3, 3), groups=c)
    y = _blend(x, smooth, _u(len(x), *factor, x).to(x.dtype))
    return torch.where(_chance(len(x), p, x), y, x)


def _blur_kernel(size: int) -> int:
    return 9 if size <= 32 else (int(0.1 * size) // 2) * 2 + 1


def _natural(x: torch.Tensor, *, jitter: tuple[float, ...] = (0.5, 0.5, 0.5, 0.1), flip: bool = True,
             grey: bool = True) -> torch.Tensor:
    x = hflip(x) if flip else x
    x = random_resized_crop(x)
    x = color_jitter(x, *jitter) if jitter else x
    return random_grayscale(x) if grey else x


def _novel(x: torch.Tensor, *, jitter: tuple[float, ...] = (0.2, 0.2, 0.2, 0.04), grey: bool = True) -> torch.Tensor:
    return random_sharpness(random_equalize(_natural(x, jitter=jitter, grey=grey)))


_SEQUENCES: dict[str, Augment] = {
    "natural": _natural,
    "simple": lambda x: _natural(x, flip=False, grey=False),
    "novel": _novel,
    "greyscale": lambda x: _novel(x, jitter=(), grey=False),
}
AUGMENTATIONS = tuple(_SEQUENCES)


def augment(x: torch.Tensor, sequence: str = "natural") -> torch.Tensor:
    """One random view of each image: float (B, 3, H, W) in [0, 1] -> same shape, in [0, 1].

    Args:
        x: RGB images in [0, 1] (grey images repeated to 3 channels).
        sequence: ``natural``, ``simple``, ``novel`` or ``greyscale``.

    Raises:
        ConfigError: unknown `sequence`, or images that are not (B, 3, H, W).
    """
    if sequence not in _SEQUENCES:
        raise ConfigError(f"The 'augmentation' parameter must be one of {list(_SEQUENCES)}. Got {sequence!r} "
                          f"instead.{did_you_mean(sequence, list(_SEQUENCES))}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ConfigError(f"augment() takes RGB images (B, 3, H, W); got shape {tuple(x.shape)}. Repeat grey "
                          f"images to 3 channels first (medtransfer.data.transforms.match_channels).")
    return gaussian_blur(_SEQUENCES[sequence](x), _blur_kernel(x.shape[-1]))


def flip_rotate_intensity(x: torch.Tensor) -> torch.Tensor:
    """A random view of each image (B, C, H, W) or volume (B, C, D, H, W) in [0, 1]: the exemplar augmentation.

    Per-axis flips (p 0.5 each), a 90° rotation in a random plane (p 0.5), brightness ±0.125 and contrast
    ×U(0.5, 1.5) (p 0.5): Taleb et al.'s RandomRotate90 / flips / RandomBrightnessContrast (2D) and their 3D
    flips, rotations and intensity changes; the arbitrary-angle rotations and the zoom of 3D are left out.
    """
    b = len(x)
    spatial = tuple(range(2, x.dim()))
    for dim in spatial:
        x = torch.where(_chance(b, 0.5, x), x.flip(dim), x)
    planes = [(i, j) for i in spatial for j in spatial if i < j and x.shape[i] == x.shape[j]]
    if planes:
        plane = planes[int(torch.randint(len(planes), ()).item())]
        x = torch.where(_chance(b, 0.5, x), torch.rot90(x, 1, plane), x)
    shape = (-1,) + (1,) * (x.dim() - 1)
    mean = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
    y = (x - mean) * _u(b, 0.5, 1.5, x).view(shape) + mean + _u(b, -0.125, 0.125, x).view(shape)
    return torch.where(_chance(b, 0.5, x), y.clamp(0.0, 1.0), x)
