"""ChestX-ray14 (Wang et al. 2017): 112,120 frontal chest X-rays of 30,805 patients, 14 labels mined from reports.

The folder as the NIH download unpacks (the twelve ``images_NNN.tar.gz`` into one ``images/``, or Kaggle's
``images_NNN/images/`` folders), under the data root (or its ``ChestX-ray14/`` or ``CXR8/``)::

    Data_Entry_2017.csv     Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,...
    train_val_list.txt      the official 86,524 train+val images, one file name a line
    test_list.txt           the official 25,596 test images
    images/00000001_000.png ...

``Finding Labels`` is ``|``-separated (``Atelectasis|Effusion``) or ``No Finding``. Two tasks:

* ``chestxray14``: the 14 labels, multi-label, mean AUC; the official test list is the test split and the
  official train+val list is split by patient into train/val (87/13 from ``seed``, close to Hosseinzadeh Taher
  et al.'s 75,312 / 11,212). The official lists are patient-disjoint, and so is the val split.
* ``chestxray14-7``: Anton et al.'s task: single-label images of 7 classes only (Atelectasis, Cardiomegaly,
  Effusion, Infiltration, Mass, Nodule, Pneumothorax; 'No Finding', Pneumonia and multi-label rows dropped),
  their 80/20 row shuffle (random_state 42) by default (``split_rule=anton2022``), or ``seeded`` by patient.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from medtransfer.data.base import DATASETS, DatasetCard, DatasetEntry, default_data_root
from medtransfer.data.labelled import (
    SPLIT_RULES,
    LabelledFiles,
    Layout,
    check_files,
    find_root,
    group_split,
    option_key,
    read_table,
    rule_split,
)
from medtransfer.errors import ConfigError, DataError

URL = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
LAYOUT = Layout("ChestX-ray14", "Data_Entry_2017.csv, train_val_list.txt, test_list.txt and images/NNNNNNNN_NNN.png "
                "(or images_NNN/images/)", URL)
LABELS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
          "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
ANTON_7 = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumothorax")
_CITATION = ("X. Wang et al. ChestX-ray8: Hospital-scale chest X-ray database and benchmarks on weakly-supervised "
             "classification and localization of common thorax diseases. CVPR 2017.")

CARDS = {
    "chestxray14": DatasetCard(
        name="chestxray14", task="multi-label", label_names=LABELS, channels=1, metrics=("accuracy", "auc"),
        default_metric="auc", license="public (NIH Clinical Center); cite the data set", citation=_CITATION,
        source=URL, description="ChestX-ray14, 14 labels (multi-label); official test list, train+val split by "
                                "patient.",
        extra={"layout": LAYOUT.expected, "published_counts": {"images": 112120, "train_val_list.txt": 86524,
                                                              "test_list.txt": 25596},
               "label_rule": "Finding Labels split on '|'; 'No Finding' -> all 0",
               "options": "seed (val: train_val_list.txt by patient 87/13; test: test_list.txt)"}),
    "chestxray14-7": DatasetCard(
        name="chestxray14-7", task="multi-class", label_names=ANTON_7, channels=1, citation=_CITATION, source=URL,
        license="public (NIH Clinical Center); cite the data set",
        description="ChestX-ray14, Anton et al.'s 7 single-label classes (multi-class).",
        extra={"layout": LAYOUT.expected,
               "label_rule": "single-label rows of the 7 classes; No Finding, Pneumonia, multi-label dropped",
               "options": "split_rule=anton2022|seeded (anton2022); seed"}),
}


def find(data_root: str | os.PathLike[str] | None) -> Path:
    return find_root(default_data_root(data_root), ("", "ChestX-ray14", "CXR8"), "Data_Entry_2017.csv", LAYOUT)


def _image_index(root: Path) -> dict[str, Path]:
    """File name -> path over images/ and images_NNN/images/."""
    folders = [root / "images", *sorted(root.glob("images_*/images"))]
    index = {p.name: p for folder in folders if folder.is_dir() for p in folder.glob("*.png")}
    if not index:
        raise LAYOUT.missing(root, "the folder 'images/' (or images_NNN/images/) of PNG files")
    return index


def _list(root: Path, name: str) -> set[str]:
    path = root / name
    if not path.is_file():
        raise LAYOUT.missing(root, f"the official split list {name!r}")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def check(card: DatasetCard, options: dict[str, Any]) -> None:
    allowed = ("seed",) if card.name == "chestxray14" else ("seed", "split_rule")
    unknown = [k for k in options if k not in allowed]
    if unknown:
        raise ConfigError(f"Dataset {card.name!r} takes the options {list(allowed)}; got {unknown}.")
    if options.get("split_rule", "anton2022") not in SPLIT_RULES:
        raise ConfigError(f"The 'split_rule' option of {card.name} must be one of {list(SPLIT_RULES)}. "
                          f"Got {options['split_rule']!r} instead.")


def load_chestxray14(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
                     seed: int = 0, split_rule: str = "anton2022") -> LabelledFiles:
    """One split of a ChestX-ray14 task (see the module docstring); `split_rule` is for chestxray14-7 only."""
    check(card, {"seed": seed} | ({"split_rule": split_rule} if card.name == "chestxray14-7" else {}))
    root = find(data_root)
    table = root / "Data_Entry_2017.csv"
    rows = read_table(table, ("Image Index", "Finding Labels", "Patient ID"), LAYOUT)
    for i, r in enumerate(rows):
        unknown = [f for f in r["Finding Labels"].split("|") if f not in LABELS and f != "No Finding"]
        if unknown:
            raise DataError(f"ChestX-ray14: row {i + 2} of {table.name} has the finding(s) {unknown}, outside the "
                            f"14 labels {list(LABELS)} and 'No Finding'.")
    if card.name == "chestxray14-7":
        rows = [r for r in rows if r["Finding Labels"] in ANTON_7]
        y = np.array([ANTON_7.index(r["Finding Labels"]) for r in rows], np.int64)
        patients = [r["Patient ID"] for r in rows]
        names = rule_split(split_rule, patients, y, seed=seed, dataset=card.name)
        options = option_key(seed=seed, split_rule=split_rule)
        sources = [table]
    else:
        test, train_val = _list(root, "test_list.txt"), _list(root, "train_val_list.txt")
        rows = [r for r in rows if r["Image Index"] in test or r["Image Index"] in train_val]
        y = np.zeros((len(rows), len(LABELS)), np.uint8)
        for i, r in enumerate(rows):
            for f in r["Finding Labels"].split("|"):
                if f in LABELS:
                    y[i, LABELS.index(f)] = 1
        patients = [r["Patient ID"] for r in rows]
        is_test = np.array([r["Image Index"] in test for r in rows])
        names = np.full(len(rows), "test", dtype=object)
        rest = np.flatnonzero(~is_test)
        names[rest] = group_split([patients[i] for i in rest], {"train": 0.87, "val": 0.13}, seed=seed)
        options = option_key(seed=seed)
        sources = [table, root / "test_list.txt", root / "train_val_list.txt"]
    index = _image_index(root)
    missing = [r["Image Index"] for r in rows if r["Image Index"] not in index]
    check_files([root / "images" / m for m in missing], LAYOUT)
    take = np.flatnonzero(names == split)
    return LabelledFiles(card, split, [index[rows[i]["Image Index"]] for i in take], y[take],
                         groups=[patients[i] for i in take], sources=sources, options=options)


for _card_ in CARDS.values():
    DATASETS.add(_card_.name, DatasetEntry(_card_, load_chestxray14, check))
