"""Montgomery County chest X-rays (Jaeger et al. 2014): 138 CXRs with manual left and right lung masks.

The folder as the NLM download unpacks (``NLM-MontgomeryCXRSet/MontgomerySet/``, ``MontgomerySet/`` or its
content, under the data root)::

    CXR_png/MCUCXR_0001_0.png ...                 (grey PNG, 4020x4892 or 4892x4020)
    ManualMask/leftMask/MCUCXR_0001_0.png ...     ManualMask/rightMask/MCUCXR_0001_0.png ...

The lung mask is the union of the left and right masks (Hosseinzadeh Taher et al.'s LXS task). There is no
official split: a seeded 70/10/20 train/val/test split of the images (``seed`` option).

``montgomery-tb`` is the same download as a classification task (Anton et al.'s): tuberculosis vs normal, the
label from the file name's last digit (MCUCXR_0001_0.png: normal), split as ``shenzhen`` is.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medtransfer.data.base import DATASETS, DatasetCard, DatasetEntry, default_data_root
from medtransfer.data.folder import read_image
from medtransfer.data.labelled import LabelledFiles, Layout, check_split_options, split_files
from medtransfer.data.segmentation import PairedFiles, binary_mask, seeded_split, segmentation_card
from medtransfer.data.shenzhen import tb_card, tb_files
from medtransfer.errors import DataError

URL = "https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets"
CARD = segmentation_card(
    "montgomery-lungs", ("background", "lung"), channels=1,
    license="public (NLM); cite the data set", source=URL,
    citation="S. Jaeger et al. Two public chest X-ray datasets for computer-aided screening of pulmonary diseases. "
             "Quant. Imaging Med. Surg. 4(6):475-477 (2014).",
    description="138 frontal chest X-rays (Montgomery County, 80 normal, 58 TB) with manual lung masks; the mask "
                "is the union of ManualMask/leftMask and rightMask. A seeded 70/10/20 split.")


def find_root(data_root: str | os.PathLike[str] | None) -> Path:
    base = default_data_root(data_root)
    for root in (base, base / "MontgomerySet", base / "NLM-MontgomeryCXRSet" / "MontgomerySet"):
        if (root / "CXR_png").is_dir() and (root / "ManualMask").is_dir():
            return root
    raise DataError(f"The Montgomery set is not in {str(base)!r}: expected CXR_png/ and ManualMask/leftMask|rightMask/ "
                    f"there (or in MontgomerySet/ or NLM-MontgomeryCXRSet/MontgomerySet/), as the NLM download "
                    f"unpacks. Get it from {URL} and pass --data-root to its folder.")


def load_montgomery(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
                    seed: int = 0) -> PairedFiles:
    """One split of the Montgomery lung masks (see the module docstring)."""
    root = find_root(data_root)
    images = sorted(p for p in (root / "CXR_png").glob("*.png") if not p.name.startswith("."))
    if not images:
        raise DataError(f"{str(root / 'CXR_png')!r} holds no PNG image (expected MCUCXR_0001_0.png ...).")
    halves = [(root / "ManualMask" / "leftMask" / p.name, root / "ManualMask" / "rightMask" / p.name) for p in images]
    missing = [str(m) for pair in halves for m in pair if not m.is_file()]
    if missing:
        raise DataError(f"{len(missing)} lung mask file(s) are missing, e.g. {missing[:3]}: every CXR_png/NAME.png "
                        "needs ManualMask/leftMask/NAME.png and ManualMask/rightMask/NAME.png.")
    rows = seeded_split(len(images), split, seed=seed)
    images, halves = [images[i] for i in rows], [halves[i] for i in rows]

    def mask(i: int) -> np.ndarray:
        left, right = (binary_mask(p) for p in halves[i])
        if left.shape != right.shape:
            raise DataError(f"The left and right lung masks of {images[i].name!r} differ in size ({left.shape} vs "
                            f"{right.shape}).")
        return left | right

    return PairedFiles(card, split, images, mask, read_image=lambda p: read_image(p, 1),
                       sources=[m for pair in halves for m in pair])


DATASETS.add(CARD.name, DatasetEntry(CARD, load_montgomery))

TB_LAYOUT = Layout("Montgomery", "NLM-MontgomeryCXRSet/MontgomerySet/{CXR_png/MCUCXR_NNNN_L.png, ClinicalReadings/, "
                   "ManualMask/}", URL)
TB_CARD = tb_card("montgomery-tb", "Montgomery County TB chest X-rays (binary: tuberculosis vs normal).",
                  {"normal": 80, "tuberculosis": 58}, TB_LAYOUT)


def load_montgomery_tb(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
                       split_rule: str = "seeded", seed: int = 0) -> LabelledFiles:
    """One split of the Montgomery TB classification task (see the module docstring)."""
    check_split_options(card, {"split_rule": split_rule})
    root = find_root(data_root)
    paths, y = tb_files(root, "MCUCXR", TB_LAYOUT)
    return split_files(card, split, paths, y, rule=split_rule, seed=seed, layout=TB_LAYOUT)


DATASETS.add(TB_CARD.name, DatasetEntry(TB_CARD, load_montgomery_tb, check_split_options))
