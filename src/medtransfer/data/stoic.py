"""STOIC2021 (Revel et al. 2021): chest CT of 2,000 patients, COVID-19 (RT-PCR) and severity; here Anton et al.'s
2D task: COVID-19 or not from the middle axial slice.

The folder as the public training set unpacks (AWS open data ``stoic2021-training``, under the data root)::

    metadata/reference.csv     PatientID,probCOVID,probSevere    (0 or 1 each)
    data/mha/<PatientID>.mha   one CT volume per patient (MetaImage; read with SimpleITK, the ``stoic`` extra)

The image is the volume's middle axial slice (index floor(0.5 D) of the (D, H, W) array), HU clipped to
[-1000, 250] and scaled to 0-255, as Anton et al. do (they then convert to RGB; the model's preprocessing
repeats the grey channel). The label is ``probCOVID``. Metric: mean per-class accuracy (Anton et al.), AUC beside
it. No official split with labels: seeded 70/10/20 or Anton et al.'s 80/20 shuffle (``split_rule``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medtransfer.data.base import DATASETS, DatasetCard, DatasetEntry, default_data_root
from medtransfer.data.labelled import (
    LabelledFiles,
    Layout,
    check_split_options,
    find_root,
    hu_window,
    optional_module,
    read_table,
    split_files,
)
from medtransfer.errors import DataError

URL = "https://registry.opendata.aws/stoic2021-training/"
LAYOUT = Layout("STOIC", "stoic2021-training/{metadata/reference.csv, data/mha/<PatientID>.mha}", URL)
HU_WINDOW = (-1000.0, 250.0)
CARD = DatasetCard(name="stoic", task="binary", label_names=("no COVID-19", "COVID-19"), channels=1,
                   metrics=("balanced_accuracy", "auc", "accuracy"), default_metric="balanced_accuracy",
                   license="CC BY-NC 4.0", source=URL,
                   citation="M.-P. Revel et al. Study of thoracic CT in COVID-19: the STOIC project. Radiology "
                            "301(1):E361-E370 (2021).",
                   description="STOIC2021 chest CT, COVID-19 vs not, from the middle axial slice (2D).",
                   extra={"layout": LAYOUT.expected, "published_counts": {"patients": 2000}, "extra": "stoic",
                          "label_rule": "probCOVID; the middle axial slice in [-1000, 250] HU",
                          "options": "split_rule=seeded|anton2022; seed"})


def middle_slice(path: Path) -> np.ndarray:
    """The middle axial slice of a CT volume as (H, W, 1) uint8 over the HU window [-1000, 250]."""
    sitk = optional_module("SimpleITK", "stoic", path)
    try:
        volume = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))  # (D, H, W), in HU
    except RuntimeError as e:
        raise DataError(f"Cannot read the CT volume {str(path)!r} ({e}); the file is corrupt or not MetaImage.") \
            from e
    if volume.ndim != 3:
        raise DataError(f"The CT volume {str(path)!r} has shape {volume.shape}; a volume is (D, H, W).")
    return hu_window(volume[int(np.floor(0.5 * volume.shape[0]))], *HU_WINDOW)[..., None]


def load_stoic(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
               split_rule: str = "seeded", seed: int = 0) -> LabelledFiles:
    """One split of STOIC's 2D COVID-19 task (see the module docstring)."""
    check_split_options(card, {"split_rule": split_rule})
    root = find_root(default_data_root(data_root), ("", "stoic2021-training"), "metadata", LAYOUT)
    table = root / "metadata" / "reference.csv"
    rows = read_table(table, ("PatientID", "probCOVID"), LAYOUT)
    bad = [(i + 2, r["probCOVID"]) for i, r in enumerate(rows) if r["probCOVID"] not in ("0", "1")]
    if bad:
        raise DataError(f"STOIC: row {bad[0][0]} of reference.csv has probCOVID {bad[0][1]!r}; it is 0 or 1.")
    paths = [root / "data" / "mha" / f"{r['PatientID']}.mha" for r in rows]
    y = np.array([int(r["probCOVID"]) for r in rows], np.int64)
    return split_files(card, split, paths, y, rule=split_rule, seed=seed, layout=LAYOUT, sources=[table],
                       read=middle_slice)


DATASETS.add(CARD.name, DatasetEntry(CARD, load_stoic, check_split_options))
