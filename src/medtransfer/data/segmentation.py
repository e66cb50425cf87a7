"""Segmentation datasets: an image and an integer mask per sample (and, for some, a field of view).

A segmentation card is a `DatasetCard` with ``task="segmentation"``: its ``label_names`` name the mask values
(0 is the background), ``metrics`` are Dice and IoU, and ``has_masks`` is set. `PairedFiles` is the split of
every file-based source (DRIVE, Montgomery, SIIM-ACR, user folders): image files decoded on demand, masks read
by a per-source function, both checked against each other when read, with the file named in every error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medtransfer.data.base import DatasetCard, ImageDataset, files_fingerprint
from medtransfer.errors import DataError

MaskReader = Callable[[int], np.ndarray]  # sample index -> (H, W) integer mask


def segmentation_card(name: str, class_names: Sequence[str], *, channels: int, image_size: int | None = None,
                      dims: int = 2, **fields: Any) -> DatasetCard:
    """A segmentation card: mask value k is class ``class_names[k]`` (0: background); Dice headline."""
    return DatasetCard(name=name, task="segmentation", label_names=tuple(class_names), dims=dims, channels=channels,
                       image_size=image_size, metrics=("dice", "iou"), default_metric="dice", has_masks=True,
                       **fields)


def read_grey(path: Path) -> np.ndarray:
    """A mask or field-of-view file as a 2-D integer array (palette GIFs give their index values)."""
    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("L") if im.mode in ("RGB", "RGBA", "LA") else im)
    except (OSError, ValueError) as e:
        raise DataError(f"Cannot read the mask {str(path)!r}: {e}. Re-export it as PNG or GIF.") from e
    if array.ndim != 2:
        raise DataError(f"The mask {str(path)!r} has shape {array.shape}; a mask is one 2-D integer image.")
    return array.astype(np.uint8) if array.dtype == bool else array


def binary_mask(path: Path) -> np.ndarray:
    """A 0/255 (or 0/1) mask file as 0/1 uint8: any non-zero pixel is foreground."""
    return (read_grey(path) > 0).astype(np.uint8)


def check_values(mask: np.ndarray, n_classes: int, where: str) -> np.ndarray:
    """`mask` as int64 if every value is a class 0..n_classes-1, else an error naming the file and the values."""
    bad: np.ndarray = np.unique(mask[(mask < 0) | (mask >= n_classes)])
    if bad.size:
        raise DataError(f"The mask {where} holds the value(s) {bad[:10].tolist()}, outside the {n_classes} classes "
                        f"(0..{n_classes - 1}) of its dataset. Fix the mask, or declare more classes.")
    return mask.astype(np.int64)


class PairedFiles(ImageDataset):
    """One split of image files with a mask per image (and an optional field of view).

    Args:
        card: a `segmentation_card`.
        images: one path per sample.
        masks: sample index -> mask; `names` identify samples in messages.
        fov: sample index -> bool field of view, or None.
        read_image: path -> (H, W, C) uint8 image with the card's channels.
    """

    def __init__(self, card: DatasetCard, split: str, images: Sequence[Path], masks: MaskReader, *,
                 read_image: Callable[[Path], np.ndarray], names: Sequence[str] | None = None,
                 fov: MaskReader | None = None, sources: Sequence[Path] = ()) -> None:
        super().__init__(card, split, np.zeros(len(images), dtype=np.int64))  # no class labels: masks instead
        self.paths, self._mask, self._fov, self._read = list(images), masks, fov, read_image
        self.names = list(names) if names is not None else [p.name for p in self.paths]
        self.sources = list(sources)  # the mask / CSV files the masks come from (they key the fingerprint too)
        self._fingerprint: str | None = None

    def _image(self, i: int) -> np.ndarray:
        image = self._read(self.paths[i])
        if image.ndim == 2:
            image = image[..., None]
        return image

    def images(self, index: np.ndarray) -> np.ndarray | list[np.ndarray]:
        return stack_or_list([self._image(int(i)) for i in np.asarray(index)])

    def masks(self, index: np.ndarray) -> np.ndarray | list[np.ndarray]:
        out = []
        for i in np.asarray(index).tolist():
            mask = check_values(self._mask(i), self.card.num_classes, f"of {self.names[i]!r}")
            shape = self._image_shape(i)
            if mask.shape != shape:
                raise DataError(f"The mask of {self.names[i]!r} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its "
                                f"image {str(self.paths[i])!r} is {shape[1]}x{shape[0]}: a mask must have its image's "
                                "size. Re-export the mask at the image's size.")
            out.append(mask)
        return stack_or_list(out)

    def fov(self, index: np.ndarray) -> np.ndarray | list[np.ndarray] | None:
        if self._fov is None:
            return None
        return stack_or_list([self._fov(int(i)).astype(bool) for i in np.asarray(index)])

    def _image_shape(self, i: int) -> tuple[int, ...]:
        try:
            with Image.open(self.paths[i]) as im:  # the header only: no second decode of the pixels
                return (im.height, im.width)
        except OSError:  # not a PIL format (DICOM): decode it
            return tuple(self._image(i).shape[:2])

    @property
    def fingerprint(self) -> str:
        """sha256 over the split's image and mask files (path, size, mtime), its split and channels."""
        if self._fingerprint is None:
            self._fingerprint = files_fingerprint(f"{self.card.name}:{self.split}:{self.card.channels}",
                                                  (*self.paths, *self.sources))
        return self._fingerprint


def stack_or_list(arrays: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """One array when all shapes agree (the usual case), else the list (sources of varying size)."""
    if arrays and all(a.shape == arrays[0].shape for a in arrays):
        return np.stack(arrays)
    return arrays


def seeded_split(n: int, split: str, *, seed: int) -> np.ndarray:
    """The sorted rows of `split` in the seeded 70/10/20 train/val/test split of n samples that user class folders
    get (`folder.stratified_split` with one class): the same seed gives the same split on every machine."""
    from medtransfer.data.folder import stratified_split

    return np.flatnonzero(stratified_split(np.zeros(n, np.int64), seed=seed) == split)
