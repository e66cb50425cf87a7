"""Medical Segmentation Decathlon, Task07 Pancreas (Simpson et al. 2019): 281 portal-venous CT volumes with
pancreas and tumour masks, the 3D task of Taleb et al. 2020.

The folder as the MSD download unpacks (``Task07_Pancreas.tar``, under the data root)::

    Task07_Pancreas/dataset.json
    Task07_Pancreas/imagesTr/pancreas_001.nii.gz ...     CT in HU (NIfTI; read with nibabel, the ``nifti`` extra)
    Task07_Pancreas/labelsTr/pancreas_001.nii.gz ...     0 background, 1 pancreas, 2 tumour

Each volume is reoriented to (depth, height, width) from NIfTI's (x, y, z), clipped to a soft-tissue window
([-160, 240] HU, our choice: the reference's preprocessing script is not shipped), scaled to 0-255 and resampled to
`size`³ (128, Taleb et al.'s data_dim; linear for the image, nearest for the mask). imagesTs has no labels: a
seeded 70/10/20 split of the 281 labelled volumes (``seed``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from medtransfer.data.base import (
    DATASETS,
    DatasetCard,
    DatasetEntry,
    ImageDataset,
    default_data_root,
    files_fingerprint,
)
from medtransfer.data.labelled import Layout, check_files, find_root, hu_window, optional_module
from medtransfer.data.segmentation import check_values, seeded_split, segmentation_card
from medtransfer.errors import ConfigError, DataError

URL = "http://medicaldecathlon.com/"
LAYOUT = Layout("MSD Pancreas", "Task07_Pancreas/{dataset.json, imagesTr/pancreas_NNN.nii.gz, labelsTr/...}", URL,
                "CC BY-SA 4.0")
HU_WINDOW = (-160.0, 240.0)
CARD = segmentation_card(
    "msd-pancreas", ("background", "pancreas", "tumour"), channels=1, dims=3, license="CC BY-SA 4.0", source=URL,
    citation="A. L. Simpson et al. A large annotated medical image dataset for the development and evaluation of "
             "segmentation algorithms. arXiv:1902.09063 (2019).",
    description="MSD Task07 pancreas and tumour CT segmentation, volumes resampled to size^3 (3D).",
    extra={"layout": LAYOUT.expected, "published_counts": {"labelled volumes": 281}, "extra": "nifti",
           "label_rule": "labelsTr: 0 background, 1 pancreas, 2 tumour; [-160, 240] HU", "options": "size (128); seed"})


def _read_nifti(path: Path) -> np.ndarray:
    """A NIfTI volume as (D, H, W) float64 (NIfTI's (x, y, z) axes reversed)."""
    nibabel = optional_module("nibabel", "nifti", path)
    try:
        volume = np.asarray(nibabel.load(str(path)).get_fdata(), dtype=np.float64)
    except Exception as e:  # noqa: BLE001 - nibabel raises several types for a broken file
        raise DataError(f"Cannot read the NIfTI volume {str(path)!r} ({e}); the file is corrupt.") from e
    if volume.ndim != 3:
        raise DataError(f"The volume {str(path)!r} has shape {volume.shape}; a CT volume is 3-D.")
    return volume.transpose(2, 1, 0)


def _resample(volume: np.ndarray, size: int, order: int) -> np.ndarray:
    from scipy.ndimage import zoom

    return zoom(volume, [size / s for s in volume.shape], order=order, mode="nearest", grid_mode=True)


class VolumePairs(ImageDataset):
    """One split of CT volumes and their masks, both resampled to ``size``³ when read."""

    def __init__(self, card: DatasetCard, split: str, images: list[Path], labels: list[Path], *, size: int) -> None:
        super().__init__(card, split, np.zeros(len(images), dtype=np.int64))
        self.paths, self.label_paths, self.size = images, labels, size
        self._fingerprint: str | None = None

    def _volume(self, i: int) -> np.ndarray:
        # windowed to 0-255 first, then resampled linearly (the interpolation stays inside 0-255)
        v = hu_window(_read_nifti(self.paths[i]), *HU_WINDOW).astype(np.float64)
        return np.round(np.clip(_resample(v, self.size, 1), 0, 255)).astype(np.uint8)[..., None]

    def _mask(self, i: int) -> np.ndarray:
        image_shape = _read_nifti(self.paths[i]).shape
        mask = np.round(_read_nifti(self.label_paths[i])).astype(np.int64)
        if mask.shape != image_shape:
            raise DataError(f"The label volume {str(self.label_paths[i])!r} is {mask.shape} but its image is "
                            f"{image_shape}: a mask must have its image's shape.")
        return check_values(_resample(mask, self.size, 0), self.card.num_classes, f"{self.label_paths[i].name!r}")

    def images(self, index: np.ndarray) -> np.ndarray:
        return np.stack([self._volume(int(i)) for i in np.asarray(index)])

    def masks(self, index: np.ndarray) -> np.ndarray:
        return np.stack([self._mask(int(i)) for i in np.asarray(index)])

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = files_fingerprint(f"{self.card.name}:{self.split}:{self.size}:{HU_WINDOW}",
                                                  (*self.paths, *self.label_paths))
        return self._fingerprint


def check(card: DatasetCard, options: dict[str, Any]) -> None:
    unknown = [k for k in options if k not in ("size", "seed")]
    if unknown:
        raise ConfigError(f"Dataset {card.name!r} takes the options ['size', 'seed']; got {unknown}.")
    size = options.get("size", 128)
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ConfigError(f"The 'size' option of {card.name} must be an int >= 8. Got {size!r} instead.")


def load_pancreas(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
                  size: int = 128, seed: int = 0) -> VolumePairs:
    """One split of MSD Task07 Pancreas (see the module docstring)."""
    check(card, {"size": size})
    root = find_root(default_data_root(data_root), ("Task07_Pancreas", ""), "imagesTr", LAYOUT)
    images = sorted(p for p in (root / "imagesTr").glob("pancreas_*.nii.gz") if not p.name.startswith("."))
    if not images:
        raise LAYOUT.missing(root / "imagesTr", "volumes named pancreas_NNN.nii.gz")
    labels = [root / "labelsTr" / p.name for p in images]
    check_files(labels, LAYOUT, what="label volumes", listed_in="imagesTr (one per image)")
    rows = seeded_split(len(images), split, seed=seed)
    return VolumePairs(card, split, [images[i] for i in rows], [labels[i] for i in rows], size=size)


DATASETS.add(CARD.name, DatasetEntry(CARD, load_pancreas, check))
