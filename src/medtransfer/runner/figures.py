"""Figures the runner writes beside the results store (the store keeps the numbers, these the pictures).

`mask_overlays` draws, for a few test images, the image, the true mask and the predicted mask side by side,
each class in its own colour over the grey image, as one PNG (PIL only: no plotting library needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
    rows = []
    for image, truth, pred in zip(images, truths, predictions, strict=True):
        rgb = _grey_rgb(np.asarray(image))
        panels = [rgb, _blend(rgb, np.asarray(truth)), _blend(rgb, np.asarray(pred))]
        row = np.concatenate([np.pad(p, ((2, 2), (2, 2), (0, 0)), constant_values=255) for p in panels], axis=1)
        im = Image.fromarray(np.clip(row, 0, 255).astype(np.uint8))
        rows.append(im.resize((max(1, round(im.width * height / im.height)), height), Image.Resampling.NEAREST))
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, height * len(rows)), "white")
    for i, r in enumerate(rows):
        sheet.paste(r, (0, i * height))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
