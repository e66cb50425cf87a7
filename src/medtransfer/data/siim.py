"""SIIM-ACR pneumothorax segmentation (Kaggle 2019, stage 1): chest X-ray DICOMs with RLE-encoded masks.

The folder as the competition's stage-1 data unpacks, under the data root (or its ``siim/`` subfolder)::

    train-rle.csv                                  header "ImageId, EncodedPixels" (note the space)
    dicom-images-train/<study>/<series>/<ImageId>.dcm   (1024x1024 grey; pydicom: medtransfer[dicom])

PNG copies of the images (``png_images/<ImageId>.png`` or ``images/<ImageId>.png``) are read instead when present.
``EncodedPixels`` is the competition's relative run-length code (``mask_functions.py``: pairs of an offset
from the end of the previous run and a run length, over the pixels in column-major order), ``-1`` for no
pneumothorax; an image with several rows has several regions, whose union is its mask. The labelled data has
no official test split: a seeded 70/10/20 split of the images (``seed`` option).
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from medtransfer.data.base import DATASETS, DatasetCard, DatasetEntry, default_data_root
from medtransfer.data.folder import read_image
from medtransfer.data.segmentation import PairedFiles, seeded_split, segmentation_card
from medtransfer.errors import DataError

URL = "https://www.kaggle.com/c/siim-acr-pneumothorax-segmentation"
CARD = segmentation_card(
    "siim-pneumothorax", ("background", "pneumothorax"), channels=1, image_size=1024, source=URL,
    license="competition data: accept the Kaggle competition rules before downloading",
    citation="SIIM-ACR Pneumothorax Segmentation challenge (2019), Society for Imaging Informatics in Medicine.",
    description="Chest X-rays (1024x1024) with pneumothorax masks as run-length codes; about 22% of the images "
                "have a pneumothorax. A seeded 70/10/20 split of the labelled images.")
COLUMNS = ("ImageId", "EncodedPixels")


def rle_decode(code: str, width: int, height: int) -> np.ndarray:
    """The competition's ``rle2mask(code, width, height).T``: relative run-length code -> (height, width) 0/1."""
    flat = np.zeros(width * height, dtype=np.uint8)
    numbers = [int(v) for v in code.split()]
    position = 0
    for start, length in zip(numbers[0::2], numbers[1::2], strict=True):
        position += start
        flat[position:position + length] = 1
        position += length
    return flat.reshape(width, height).T


def find_root(data_root: str | os.PathLike[str] | None) -> Path:
    base = default_data_root(data_root)
    for root in (base, base / "siim"):
        if (root / "train-rle.csv").is_file():
            return root
    raise DataError(f"SIIM-ACR is not in {str(base)!r}: expected train-rle.csv and dicom-images-train/ there (or in "
                    f"its siim/ subfolder), as the competition's stage-1 data unpacks. Accept the rules and download "
                    f"it from {URL}, then pass --data-root to its folder.")


def read_codes(csv_path: Path) -> dict[str, list[str]]:
    """{ImageId: [codes]} of train-rle.csv ('-1' rows give no code); errors name a missing column."""
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f, skipinitialspace=True)  # the header is "ImageId, EncodedPixels"
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{str(csv_path)!r} lacks the column(s) {missing}; its header is {reader.fieldnames}. "
                            f"The competition's file starts with 'ImageId, EncodedPixels'.")
        codes: dict[str, list[str]] = defaultdict(list)
        for row in reader:
            code = (row["EncodedPixels"] or "").strip()
            codes[row["ImageId"].strip()] += [] if code in ("-1", "") else [code]
    return dict(codes)


def _image_files(root: Path) -> dict[str, Path]:
    files = {}
    for pattern in ("dicom-images-train/**/*.dcm", "png_images/*.png", "images/*.png"):
        files.update({p.stem: p for p in root.glob(pattern)})  # PNG copies (later) win over DICOM
    return files


def load_siim(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
              seed: int = 0) -> PairedFiles:
    """One split of SIIM-ACR (see the module docstring)."""
    root = find_root(data_root)
    codes, files = read_codes(root / "train-rle.csv"), _image_files(root)
    absent = sorted(set(codes) - set(files))
    if absent:
        raise DataError(f"{len(absent)} image(s) listed in train-rle.csv are not under {str(root)!r} "
                        f"(dicom-images-train/**/ImageId.dcm or png_images/ImageId.png), e.g. {absent[:3]}.")
    names = sorted(codes)
    names = [names[i] for i in seeded_split(len(names), split, seed=seed)]
    images = [files[n] for n in names]
    read = lambda p: read_image(p, 1)  # noqa: E731

    def mask(i: int) -> np.ndarray:
        height, width = _image_size(images[i])
        out = np.zeros((height, width), dtype=np.uint8)
        for code in codes[names[i]]:
            out |= rle_decode(code, width, height)
        return out

    return PairedFiles(card, split, images, mask, names=names, read_image=read, sources=[root / "train-rle.csv"])


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file's header: PIL for PNG, pydicom's Rows/Columns for DICOM (no pixel decode)."""
    if path.suffix.lower() != ".dcm":
        from PIL import Image

        with Image.open(path) as im:
            return im.height, im.width
    try:
        import pydicom
    except ImportError as e:
        raise DataError(f"Reading the DICOM file {str(path)!r} needs pydicom: pip install 'medtransfer[dicom]'.") from e
    header = pydicom.dcmread(path, stop_before_pixels=True)
    return int(header.Rows), int(header.Columns)


DATASETS.add(CARD.name, DatasetEntry(CARD, load_siim))
