"""EyePACS / Kaggle Diabetic Retinopathy Detection (2015): 35,126 training and 53,576 test fundus photographs.

The folder as the Kaggle download unpacks (under the data root, or its ``diabetic-retinopathy-detection/``)::

    trainLabels.csv                  image,level        (10_left,0)
    train/10_left.jpeg ...
    retinopathy_solution.csv         image,level,Usage  (the test labels, released after the competition;
    test/1_left.jpeg ...              Anton et al.'s testLabels.csv with image,level is read as well)

``level`` is the grade 0-4 (no DR, mild, moderate, severe, proliferative). Each patient has a left and a right
eye (``<patient>_left``, ``<patient>_right``), which always land in the same split. Two tasks:

* ``eyepacs``: the 5 grades, ordinal; QW-kappa headline (Taleb et al.), mean per-class accuracy beside it
  (Anton et al.'s metric).
* ``eyepacs-referable``: referable DR, grade >= 2 (moderate or worse), vs not.

Splits: the official train and test; val is 10% of the training patients (both eyes), from ``seed``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from medtransfer.data.base import DATASETS, DatasetCard, DatasetEntry, default_data_root
from medtransfer.data.labelled import LabelledFiles, Layout, check_files, find_root, group_split, option_key, read_table
from medtransfer.errors import ConfigError, DataError

URL = "https://www.kaggle.com/c/diabetic-retinopathy-detection/data"
LAYOUT = Layout("EyePACS", "trainLabels.csv, train/<patient>_<left|right>.jpeg, retinopathy_solution.csv (or "
                "testLabels.csv), test/...", URL, "a Kaggle account and the competition's rules")
GRADES = ("no DR", "mild", "moderate", "severe", "proliferative")
REFERABLE_FROM = 2
_CITATION = "Kaggle Diabetic Retinopathy Detection (EyePACS), 2015. https://www.kaggle.com/c/diabetic-retinopathy-detection"

CARDS = {
    "eyepacs": DatasetCard(name="eyepacs", task="ordinal", label_names=GRADES, channels=3,
                           metrics=("qw_kappa", "balanced_accuracy", "accuracy", "auc"), default_metric="qw_kappa",
                           license=LAYOUT.licence_note, citation=_CITATION, source=URL,
                           description="EyePACS diabetic retinopathy, 5 grades (ordinal).",
                           extra={"layout": LAYOUT.expected, "published_counts": {"train": 35126, "test": 53576},
                                  "label_rule": "level 0-4", "options": "seed (val: 10% of train patients)"}),
    "eyepacs-referable": DatasetCard(name="eyepacs-referable", task="binary",
                                     label_names=("non-referable", "referable"), channels=3,
                                     metrics=("auc", "accuracy"), default_metric="auc", license=LAYOUT.licence_note,
                                     citation=_CITATION, source=URL,
                                     description="EyePACS referable diabetic retinopathy (grade >= 2) vs not.",
                                     extra={"layout": LAYOUT.expected, "label_rule": "level >= 2 -> referable",
                                            "options": "seed (val: 10% of train patients)"}),
}


def _test_table(root: Path) -> Path:
    for name in ("retinopathy_solution.csv", "testLabels.csv"):
        if (root / name).is_file():
            return root / name
    raise LAYOUT.missing(root, "the test labels 'retinopathy_solution.csv' (or 'testLabels.csv')")


def check(card: DatasetCard, options: dict[str, Any]) -> None:
    unknown = [k for k in options if k != "seed"]
    if unknown:
        raise ConfigError(f"Dataset {card.name!r} takes the options ['seed']; got {unknown}.")


def load_eyepacs(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
                 seed: int = 0) -> LabelledFiles:
    """One split of an EyePACS task (see the module docstring)."""
    root = find_root(default_data_root(data_root), ("", "diabetic-retinopathy-detection"), "trainLabels.csv", LAYOUT)
    table = _test_table(root) if split == "test" else root / "trainLabels.csv"
    rows = read_table(table, ("image", "level"), LAYOUT)
    grades = []
    for i, r in enumerate(rows):
        if r["level"] not in ("0", "1", "2", "3", "4"):
            raise DataError(f"EyePACS: row {i + 2} of {table.name} has the level {r['level']!r}; levels are 0-4.")
        if not r["image"].endswith(("_left", "_right")):
            raise DataError(f"EyePACS: row {i + 2} of {table.name} names the image {r['image']!r}; images are "
                            "<patient>_left or <patient>_right.")
        grades.append(int(r["level"]))
    y = np.array(grades, np.int64)
    if card.name == "eyepacs-referable":
        y = (y >= REFERABLE_FROM).astype(np.int64)
    folder = root / ("test" if split == "test" else "train")
    paths = [folder / f"{r['image']}.jpeg" for r in rows]
    check_files(paths, LAYOUT)
    patients = [r["image"].rsplit("_", 1)[0] for r in rows]
    names = (np.full(len(rows), "test", dtype=object) if split == "test"
             else group_split(patients, {"train": 0.9, "val": 0.1}, seed=seed))
    take = np.flatnonzero(names == split)
    return LabelledFiles(card, split, [paths[i] for i in take], y[take], groups=[patients[i] for i in take],
                         sources=[table], options=option_key(seed=seed))


for _card_ in CARDS.values():
    DATASETS.add(_card_.name, DatasetEntry(_card_, load_eyepacs, check))
