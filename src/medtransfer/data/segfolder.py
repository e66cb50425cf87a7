"""User segmentation data: a folder of images with a mask of the same name for each.

Layouts (hidden files skipped; a mask is matched to its image by file stem, ``case7.png`` ~ ``case7.gif``)::

    root/images/<name>.<ext>   root/masks/<name>.<ext>                  a seeded 70/10/20 split is drawn
    root/{train,val,test}/images/...   root/{train,val,test}/masks/...  the declared splits

Images: PNG, JPEG, BMP, TIFF, GIF (DICOM with ``medtransfer[dicom]``). Masks hold integer classes 0..K-1
(0 background); a 0/255 mask is read as 0/1. ``class_names`` names the classes; without it they are read off
the masks (``background``, ``class 1`` ...), once per folder state. NIfTI volumes are not read yet (a clear error).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medtransfer.data.base import DatasetCard
from medtransfer.data.folder import IMAGE_EXTENSIONS, SPLITS, detect_channels, read_image
from medtransfer.data.segmentation import PairedFiles, read_grey, seeded_split, segmentation_card
from medtransfer.errors import ConfigError, DataError

MASK_EXTENSIONS = frozenset({".png", ".gif", ".tif", ".tiff", ".bmp"})
_NIFTI = (".nii", ".nii.gz")


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else path.stem


def _files(folder: Path, extensions: frozenset[str]) -> dict[str, Path]:
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.name.endswith(_NIFTI):
            raise DataError(f"{str(p)!r} is a NIfTI volume; user segmentation folders of volumes are not supported "
                            "yet. Use 2D slices (PNG) with their masks, or a registered 3D dataset.")
        if p.suffix.lower() in extensions:
            out[_stem(p)] = p
    return out


def is_segmentation_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder laid out as image/mask pairs (``images/`` + ``masks/``, at the top or per split)."""
    root = Path(path).expanduser()
    return (root / "images").is_dir() and (root / "masks").is_dir() or any(
        (root / s / "images").is_dir() and (root / s / "masks").is_dir() for s in SPLITS)


def _pairs(root: Path) -> dict[str | None, list[tuple[str, Path, Path]]]:
    """{split (None: undeclared): [(name, image, mask)]}, every image with its mask, or an error naming the rest."""
    folders = {None: root} if (root / "images").is_dir() else {s: root / s for s in SPLITS if (root / s).is_dir()}
    out: dict[str | None, list[tuple[str, Path, Path]]] = {}
    for split, folder in folders.items():
        images = _files(folder / "images", IMAGE_EXTENSIONS | {".gif"})
        masks = _files(folder / "masks", MASK_EXTENSIONS)
        lonely = sorted(set(images) - set(masks))
        if lonely:
            raise DataError(f"{len(lonely)} image(s) in {str(folder / 'images')!r} have no mask of the same name in "
                            f"{str(folder / 'masks')!r}: {lonely[:5]}. Add the masks or remove the images.")
        if not images:
            raise DataError(f"{str(folder / 'images')!r} holds no image ({sorted(IMAGE_EXTENSIONS)}).")
        out[split] = [(name, images[name], masks[name]) for name in sorted(images)]
    return out


def _mask(path: Path) -> np.ndarray:
    mask = read_grey(path)
    values = np.unique(mask)
    return (mask > 0).astype(np.uint8) if len(values) <= 2 and values.max(initial=0) == 255 else mask


def _class_names(pairs: dict[str | None, list[tuple[str, Path, Path]]], class_names: Sequence[str] | None
                 ) -> tuple[str, ...]:
    if class_names is not None:
        if len(class_names) < 2:
            raise ConfigError(f"The 'class_names' parameter of a segmentation folder needs the background and at "
                              f"least one class. Got {list(class_names)}.")
        return tuple(class_names)
    masks = tuple(m for items in pairs.values() for _, _, m in items)
    return _inferred_classes(masks, tuple(p.stat().st_mtime_ns for p in masks))


@functools.lru_cache(maxsize=32)
def _inferred_classes(masks: tuple[Path, ...], stamp: tuple[int, ...]) -> tuple[str, ...]:
    """Class names read off the masks' largest value: every mask is decoded once per folder state (`stamp`)."""
    top = max(int(_mask(m).max()) for m in masks)
    return ("background", *(f"class {k}" for k in range(1, max(top, 1) + 1)))


def folder_card(path: str | os.PathLike[str], *, class_names: Sequence[str] | None = None, seed: int = 0,
                channels: int | None = None) -> DatasetCard:
    """The card of a segmentation folder (`class_names`: the mask classes; read off the masks when None)."""
    root = Path(path).expanduser().resolve()
    pairs = _pairs(root)
    first = next(iter(pairs.values()))[0][1]
    return segmentation_card(root.name, _class_names(pairs, class_names),
                             channels=channels or detect_channels(first),
                             splits=SPLITS if None in pairs else tuple(s for s in SPLITS if s in pairs),
                             source=str(root), description=f"User segmentation folder {str(root)!r}.",
                             extra={"seed": seed})


def folder_dataset(path: str | os.PathLike[str], split: str, *, class_names: Sequence[str] | None = None,
                   seed: int = 0, channels: int | None = None) -> PairedFiles:
    """One split of a segmentation folder (layouts in the module docstring)."""
    card = folder_card(path, class_names=class_names, seed=seed, channels=channels)
    if split not in card.splits:
        raise DataError(f"The segmentation folder {str(path)!r} has no {split!r} split; it has {list(card.splits)}.")
    pairs = _pairs(Path(path).expanduser().resolve())
    items = pairs.get(split) or [pairs[None][i] for i in seeded_split(len(pairs[None]), split, seed=seed)]
    masks = [m for _, _, m in items]
    return PairedFiles(card, split, [p for _, p, _ in items], lambda i: _mask(masks[i]),
                       names=[n for n, _, _ in items], read_image=lambda p: read_image(p, card.channels), sources=masks)
