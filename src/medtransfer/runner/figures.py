"""Figures the runner writes beside the results store (the store keeps the numbers, these the pictures).

`mask_overlays` draws, for a few test images, the image, the true mask and the predicted mask side by side,
each class in its own colour over the grey image, as one PNG; the analyses' pictures (saliency overlays, inversions,
embedding scatter plots, invariance bars) likewise. Plots are matplotlib Figures drawn by Agg outside pyplot (no
screen, no global backend switch).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# class k > 0 gets colour k-1 (tab10's first colours); background stays the image
_COLOURS = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                     [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]], np.float64)


def _grey_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, C) -> float RGB (H, W, 3); a volume is shown by its middle slice."""
    if image.ndim == 4:
        image = image[image.shape[0] // 2]
    grey = image.mean(-1) if image.shape[-1] != 3 else None
    return np.repeat(grey[..., None], 3, -1) if grey is not None else image.astype(np.float64)


def _blend(rgb: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    if mask.ndim == 3:
        mask = mask[mask.shape[0] // 2]
    out = rgb.copy()
    for k in range(1, int(mask.max(initial=0)) + 1):
        on = mask == k
        out[on] = (1 - alpha) * out[on] + alpha * _COLOURS[(k - 1) % len(_COLOURS)]
    return out


def mask_overlays(path: str | Path, images: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                  predictions: Sequence[np.ndarray], *, height: int = 160) -> Path:
    """Write rows of (image, true mask, predicted mask) to the PNG `path`; each row scaled to `height` px."""
    sheets = []
    for image, truth, pred in zip(images, truths, predictions, strict=True):
        rgb = _grey_rgb(np.asarray(image))
        sheets.append([rgb, _blend(rgb, np.asarray(truth)), _blend(rgb, np.asarray(pred))])
    return _panels(path, sheets, height, Image.Resampling.NEAREST)


def _heat(values: np.ndarray) -> np.ndarray:
    """A map scaled to [0, 1] -> RGB (H, W, 3) in 0..255 through matplotlib's 'inferno' colour map."""
    from matplotlib import colormaps

    v = np.asarray(values, np.float64)
    span = v.max() - v.min()
    v = (v - v.min()) / span if span > 0 else np.zeros_like(v)
    return colormaps["inferno"](v)[..., :3] * 255


def saliency_overlays(path: str | Path, images: Sequence[np.ndarray], maps: Sequence[np.ndarray], *,
                      height: int = 160) -> Path:
    """Rows of (image, saliency map, map over the image); `images` in [0, 1], 2D or 3D (middle slice shown)."""
    sheets = []
    for image, sal in zip(images, maps, strict=True):
        image, sal = np.asarray(image), np.asarray(sal)
        if image.ndim == 3:
            image, sal = image[image.shape[0] // 2], sal[sal.shape[0] // 2]
        rgb = np.repeat(image[..., None] * 255.0, 3, -1)
        heat = _heat(sal)
        sheets.append([rgb, heat, 0.5 * rgb + 0.5 * heat])
    return _panels(path, sheets, height)


def _panels(path: str | Path, rows_of_panels: Sequence[Sequence[np.ndarray]], height: int,
            resample: Image.Resampling = Image.Resampling.BILINEAR) -> Path:
    """Rows of equally tall RGB panels (0..255), white-framed, each row scaled to `height` px, as one PNG."""
    rows = []
    for panels in rows_of_panels:
        row = np.concatenate([np.pad(p, ((2, 2), (2, 2), (0, 0)), constant_values=255) for p in panels], axis=1)
        im = Image.fromarray(np.clip(row, 0, 255).astype(np.uint8))
        rows.append(im.resize((max(1, round(im.width * height / im.height)), height), resample))
    sheet = Image.new("RGB", (max(r.width for r in rows), height * len(rows)), "white")
    for i, r in enumerate(rows):
        sheet.paste(r, (0, i * height))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def inversion_panels(path: str | Path, targets: Sequence[np.ndarray], reconstructions: Sequence[np.ndarray], *,
                     height: int = 224) -> Path:
    """Rows of (target, reconstruction from the features), each (C, H, W) in [0, 1]."""
    def rgb(x: np.ndarray) -> np.ndarray:
        x = np.moveaxis(np.asarray(x), 0, -1) * 255.0
        return np.repeat(x, 3, -1) if x.shape[-1] == 1 else x

    return _panels(path, [[rgb(t), rgb(r)] for t, r in zip(targets, reconstructions, strict=True)], height)


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure drawn by Agg, outside pyplot: no global backend switch, no window, nothing left open."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=120)


def _save(fig: Any, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def embedding_scatter(path: str | Path, coords: np.ndarray, labels: np.ndarray, label_names: Sequence[str], *,
                      title: str) -> Path:
    """A 2-D scatter of `coords` coloured by label, with a legend, as a PNG."""
    fig = _figure(5, 4.5)
    ax = fig.add_subplot()
    labels = np.asarray(labels)
    for k in np.unique(labels):
        on = labels == k
        name = label_names[int(k)] if 0 <= int(k) < len(label_names) else str(k)
        ax.scatter(coords[on, 0], coords[on, 1], s=8, alpha=0.7, label=f"{name} (n={int(on.sum())})")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=2, loc="best")
    return _save(fig, path)


def invariance_bars(path: str | Path, names: Sequence[str], cosines: Sequence[float], *, title: str) -> Path:
    """Mean whitened cosine similarity per transform (1 = invariant) as a horizontal bar chart PNG."""
    fig = _figure(5, 0.35 * len(names) + 1.2)
    ax = fig.add_subplot()
    ax.barh(list(names), list(cosines), color="#1f77b4")
    ax.set_xlim(min(0.0, min(cosines)), 1.0)
    ax.invert_yaxis()
    ax.set_xlabel("whitened cosine similarity f(x) vs f(t x)")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
