"""RSNA STR Pulmonary Embolism Detection (2020): CT pulmonary angiograms of 7,279 studies, labels per slice.

The folder as the Kaggle download unpacks (under the data root, or its ``rsna-str-pulmonary-embolism-detection/``)::

    train.csv     StudyInstanceUID,SeriesInstanceUID,SOPInstanceUID,pe_present_on_image,negative_exam_for_pe,...
    train/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm

``rsna-pe`` is the slice-level task: an embolism is present on the slice (``pe_present_on_image``) or not. A slice
is read with pydicom (the ``dicom`` extra), converted to HU with its RescaleSlope / RescaleIntercept and shown in
the usual PE window (centre 100, width 700: [-250, 450] HU) as 0-255. Only train.csv has labels: a seeded 70/10/20
split by study, stratified by whether the study has an embolism (``split_rule=seeded``), or Anton et al.'s
row shuffle (``anton2022``, which mixes slices of one study across splits).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medtransfer.data.base import DATASETS, DatasetCard, DatasetEntry, default_data_root
from medtransfer.data.labelled import (
    LabelledFiles,
    Layout,
    check_files,
    check_split_options,
    find_root,
    hu_window,
    option_key,
    optional_module,
    read_table,
    rule_split,
)
from medtransfer.errors import DataError

URL = "https://www.kaggle.com/c/rsna-str-pulmonary-embolism-detection/data"
LAYOUT = Layout("RSNA PE", "train.csv, train/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm", URL,
                "a Kaggle account and the competition's rules")
PE_WINDOW = (-250.0, 450.0)  # centre 100 HU, width 700 HU
CARD = DatasetCard(name="rsna-pe", task="binary", label_names=("no embolism", "embolism"), channels=1,
                   metrics=("auc", "accuracy"), default_metric="auc", license=LAYOUT.licence_note, source=URL,
                   citation="E. Colak et al. The RSNA pulmonary embolism CT dataset. Radiol. Artif. Intell. "
                            "3(2):e200254 (2021).",
                   description="RSNA STR pulmonary embolism, slice-level embolism vs not (CT, DICOM).",
                   extra={"layout": LAYOUT.expected, "published_counts": {"studies": 7279}, "extra": "dicom",
                          "label_rule": "pe_present_on_image; [-250, 450] HU",
                          "options": "split_rule=seeded|anton2022; seed"})


def read_ct_slice(path: Path) -> np.ndarray:
    """A CT slice as (H, W, 1) uint8 in the PE window, from its DICOM file's HU."""
    pydicom = optional_module("pydicom", "dicom", path)
    try:
        dcm = pydicom.dcmread(path)
        hu = dcm.pixel_array.astype(np.float64) * float(getattr(dcm, "RescaleSlope", 1.0)) + float(
            getattr(dcm, "RescaleIntercept", 0.0))
    except (pydicom.errors.InvalidDicomError, AttributeError, ValueError, OSError) as e:
        raise DataError(f"Cannot read the DICOM slice {str(path)!r} ({e}); the file is corrupt or holds no "
                        "pixels.") from e
    return hu_window(hu, *PE_WINDOW)[..., None]


def load_rsna_pe(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
                 split_rule: str = "seeded", seed: int = 0) -> LabelledFiles:
    """One split of the slice-level RSNA PE task (see the module docstring)."""
    check_split_options(card, {"split_rule": split_rule})
    root = find_root(default_data_root(data_root), ("", "rsna-str-pulmonary-embolism-detection"), "train.csv",
                     LAYOUT)
    table = root / "train.csv"
    rows = read_table(table, ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "pe_present_on_image"),
                      LAYOUT)
    bad = [(i + 2, r["pe_present_on_image"]) for i, r in enumerate(rows) if r["pe_present_on_image"] not in ("0", "1")]
    if bad:
        raise DataError(f"RSNA PE: row {bad[0][0]} of train.csv has pe_present_on_image {bad[0][1]!r}; it is 0 or 1.")
    paths = [root / "train" / r["StudyInstanceUID"] / r["SeriesInstanceUID"] / f"{r['SOPInstanceUID']}.dcm"
             for r in rows]
    check_files(paths, LAYOUT)
    y = np.array([int(r["pe_present_on_image"]) for r in rows], np.int64)
    studies = [r["StudyInstanceUID"] for r in rows]
    positive = {s for s, v in zip(studies, y, strict=True) if v}  # stratify studies by having an embolism at all
    names = rule_split(split_rule, studies, np.array([int(s in positive) for s in studies]), seed=seed,
                       dataset=card.name)
    take = np.flatnonzero(names == split)
    return LabelledFiles(card, split, [paths[i] for i in take], y[take], groups=[studies[i] for i in take],
                         sources=[table], options=option_key(split_rule=split_rule, seed=seed), read=read_ct_slice)


DATASETS.add(CARD.name, DatasetEntry(CARD, load_rsna_pe, check_split_options))
