"""RSNA Pneumonia Detection Challenge (2018): 26,684 frontal chest X-rays (DICOM), pneumonia boxes per patient.

The folder as the Kaggle download unpacks (under the data root, or its ``rsna-pneumonia-detection-challenge/``)::

    stage_2_train_labels.csv          patientId,x,y,width,height,Target   (one row per box; Target 0 has no box)
    stage_2_detailed_class_info.csv   patientId,class   (Normal, No Lung Opacity / Not Normal, Lung Opacity)
    stage_2_train_images/<patientId>.dcm

``rsna-pneumonia`` is the image-level task: pneumonia (any box, Target 1) vs not; a patient's several box rows
are one image. DICOM needs pydicom (the ``dicom`` extra). Only the training set has labels: a seeded 70/10/20
split by patient, stratified (``split_rule=seeded``), or Anton et al.'s 80/20 shuffle (``anton2022``).
"""

from __future__ import annotations

import os

import numpy as np

from medtransfer.data.base import DATASETS, DatasetCard, DatasetEntry, default_data_root
from medtransfer.data.labelled import LabelledFiles, Layout, check_split_options, find_root, read_table, split_files
from medtransfer.errors import DataError

URL = "https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data"
LAYOUT = Layout("RSNA Pneumonia", "stage_2_train_labels.csv, stage_2_train_images/<patientId>.dcm", URL,
                "a Kaggle account and the competition's rules")
CARD = DatasetCard(name="rsna-pneumonia", task="binary", label_names=("no pneumonia", "pneumonia"), channels=1,
                   metrics=("auc", "accuracy"), default_metric="auc", license=LAYOUT.licence_note, source=URL,
                   citation="G. Shih et al. Augmenting the NIH chest radiograph dataset with expert annotations of "
                            "possible pneumonia. Radiol. Artif. Intell. 1(1):e180041 (2019).",
                   description="RSNA Pneumonia Detection, image-level pneumonia vs not (DICOM).",
                   extra={"layout": LAYOUT.expected, "published_counts": {"no pneumonia": 20672, "pneumonia": 6012},
                          "label_rule": "any box (Target 1) of the patient",
                          "options": "split_rule=seeded|anton2022; seed"})


def load_rsna(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
              split_rule: str = "seeded", seed: int = 0) -> LabelledFiles:
    """One split of the RSNA pneumonia task (see the module docstring)."""
    check_split_options(card, {"split_rule": split_rule})
    root = find_root(default_data_root(data_root), ("", "rsna-pneumonia-detection-challenge"),
                     "stage_2_train_labels.csv", LAYOUT)
    table = root / "stage_2_train_labels.csv"
    target: dict[str, int] = {}
    for i, r in enumerate(read_table(table, ("patientId", "Target"), LAYOUT)):
        if r["Target"] not in ("0", "1"):
            raise DataError(f"RSNA Pneumonia: row {i + 2} of {table.name} has Target {r['Target']!r}; it is 0 or 1.")
        target[r["patientId"]] = max(target.get(r["patientId"], 0), int(r["Target"]))  # any box: pneumonia
    patients = sorted(target)
    paths = [root / "stage_2_train_images" / f"{p}.dcm" for p in patients]
    y = np.array([target[p] for p in patients], np.int64)
    return split_files(card, split, paths, y, rule=split_rule, seed=seed, layout=LAYOUT, sources=[table])


DATASETS.add(CARD.name, DatasetEntry(CARD, load_rsna, check_split_options))
