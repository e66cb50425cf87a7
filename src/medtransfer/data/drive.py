"""DRIVE (Staal et al. 2004): 40 colour fundus images with manual vessel masks and field-of-view masks.

The folder as the official download unpacks (``DRIVE/`` or its content, under the data root)::

    training/images/21_training.tif .. 40_training.tif     training/1st_manual/21_manual1.gif ..
    training/mask/21_training_mask.gif ..                  test/images/01_test.tif .. 20_test.tif
    test/1st_manual/01_manual1.gif ..                      test/mask/01_test_mask.gif ..

Splits: the official 20 training / 20 test images; ``val`` is a seeded 4 of the 20 training images and
``train`` the other 16 (``seed`` option). Masks are 0 background, 1 vessel (the first observer, as the
literature scores); the FOV mask marks where Dice and IoU count (`PairedFiles.fov`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from medtransfer.data.base import DATASETS, DatasetCard, DatasetEntry, default_data_root
from medtransfer.data.folder import read_image
from medtransfer.data.segmentation import PairedFiles, binary_mask, segmentation_card
from medtransfer.errors import DataError

URL = "https://drive.grand-challenge.org/"
N_VAL = 4  # training images held out for validation (model selection, early stopping)
CARD = segmentation_card(
    "drive", ("background", "vessel"), channels=3, splits=("train", "val", "test"),
    license="research use only (registration on the DRIVE site); do not redistribute",
    citation="J. Staal, M. D. Abramoff, M. Niemeijer, M. A. Viergever, B. van Ginneken. Ridge-based vessel "
             "segmentation in color images of the retina. IEEE Trans. Med. Imaging 23(4):501-509 (2004).",
    source=URL, description="40 colour fundus images (565x584, 8-bit RGB TIFF) with manual vessel segmentations "
    "(first observer) and field-of-view masks; the official 20/20 training/test split. Scored inside the FOV.",
    extra={"fov": True, "n_samples": {"train": 16, "val": 4, "test": 20}})


def find_root(data_root: str | os.PathLike[str] | None) -> Path:
    """The folder holding ``training/`` and ``test/``: the data root itself, or its ``DRIVE`` / ``drive``."""
    base = default_data_root(data_root)
    for root in (base, base / "DRIVE", base / "drive"):
        if (root / "training" / "images").is_dir() and (root / "test" / "images").is_dir():
            return root
    raise DataError(f"DRIVE is not in {str(base)!r}: expected training/images, training/1st_manual, training/mask, "
                    f"test/images, test/1st_manual and test/mask there (or in its DRIVE/ subfolder), as the official "
                    f"download unpacks. Get it from {URL} (registration) and pass --data-root to its folder.")


def _files(root: Path, official: str) -> tuple[list[Path], list[Path], list[Path]]:
    """(images, manual masks, FOV masks) of the official split 'training' or 'test', in image-number order."""
    folder = root / official
    images = sorted((folder / "images").glob("*.tif"))
    if not images:
        raise DataError(f"{str(folder / 'images')!r} holds no .tif image; DRIVE's are named 21_training.tif ...")
    numbers = [p.name.split("_")[0] for p in images]
    manual = [folder / "1st_manual" / f"{n}_manual1.gif" for n in numbers]
    fov = [folder / "mask" / f"{n}_{official}_mask.gif" for n in numbers]
    missing = [str(p) for p in (*manual, *fov) if not p.is_file()]
    if missing:
        raise DataError(f"DRIVE's {official} split lacks {len(missing)} mask file(s), e.g. {missing[:3]}: every "
                        f"image NN_{official}.tif needs 1st_manual/NN_manual1.gif and mask/NN_{official}_mask.gif.")
    return images, manual, fov


def load_drive(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
               seed: int = 0) -> PairedFiles:
    """One split of DRIVE from its official folder (see the module docstring)."""
    root = find_root(data_root)
    images, manual, fov = _files(root, "test" if split == "test" else "training")
    if split != "test":
        held = np.sort(np.random.default_rng(seed).permutation(len(images))[:N_VAL])
        rows = held if split == "val" else np.setdiff1d(np.arange(len(images)), held)
        images, manual, fov = ([paths[i] for i in rows] for paths in (images, manual, fov))

    def mask(i: int) -> np.ndarray:
        return binary_mask(manual[i])

    def field(i: int) -> np.ndarray:
        return binary_mask(fov[i])

    return PairedFiles(card, split, images, mask, fov=field, read_image=lambda p: read_image(p, 3),
                       sources=[*manual, *fov])


def _check(card: DatasetCard, options: dict[str, Any]) -> None:
    from medtransfer.errors import ConfigError

    unknown = [k for k in options if k != "seed"]
    if unknown:
        raise ConfigError(f"Dataset 'drive' takes the option 'seed' (which 4 training images validate); got {unknown}.")


DATASETS.add(CARD.name, DatasetEntry(CARD, load_drive, _check))
