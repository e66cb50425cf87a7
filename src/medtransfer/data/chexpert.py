"""CheXpert (Irvin et al. 2019): 224,316 chest radiographs of 65,240 patients, 14 labels mined from reports.

The folder as the Stanford download unpacks (the "small" 8 GB version or the full one), under the data root::

    CheXpert-v1.0-small/train.csv        Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,...,Support Devices
    CheXpert-v1.0-small/valid.csv        the same columns; 234 studies labelled by radiologists (no uncertain)
    CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg ...
    CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg ...

A label is 1.0 (positive), 0.0 (negative), -1.0 (uncertain) or blank (not mentioned: negative). The options
decide what the studies decided:

* ``uncertain``: ``ones`` (U-Ones, the CheXpert paper's best policy for most labels and Anton et al.'s for
  few-shot), ``zeros`` (U-Zeros: what Anton et al.'s linear and finetune runs end up with, their
  U(0.55, 0.85) being truncated to 0 by an int cast), or ``ignore`` (images with an uncertain target label are
  left out).
* ``frontal_only`` (default True): lateral views are left out (the CheXpert competition models used frontal
  views; Anton et al. kept them).
* ``split_rule``: ``official`` (train.csv split by patient into train/val, 90/10 from ``seed``; valid.csv is the test
  split) or ``anton2022`` (train.csv only, rows shuffled with random_state 42, the first 80% train, the rest
  test: the reference's rule, which puts images of one patient on both sides; val a seeded 20% of train).

Three tasks: ``chexpert`` (the 5 competition labels, multi-label, AUC), ``chexpert-14`` (all 14, as Hosseinzadeh
Taher et al. train; they evaluate the 5) and ``chexpert-effusion`` (Anton et al.'s binary Pleural Effusion).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from medtransfer.data.base import DATASETS, DatasetCard, DatasetEntry, default_data_root
from medtransfer.data.labelled import (
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

URL = "https://stanfordmlgroup.github.io/competitions/chexpert/"
LAYOUT = Layout("CheXpert", "CheXpert-v1.0-small/{train.csv, valid.csv, train/patientNNNNN/studyN/viewN_frontal.jpg, "
                "valid/...} (or CheXpert-v1.0/ for the full-size download)", URL,
                "a free registration and the Stanford research-use agreement")
LABELS_14 = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
             "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
             "Fracture", "Support Devices")
COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
UNCERTAIN = ("ones", "zeros", "ignore")
SPLITS = ("official", "anton2022")
_CITATION = ("J. Irvin et al. CheXpert: A large chest radiograph dataset with uncertainty labels and expert "
             "comparison. AAAI 2019.")
_VALUES = {"1.0": 1, "1": 1, "0.0": 0, "0": 0, "": 0, "-1.0": -1, "-1": -1}


def _card(name: str, labels: tuple[str, ...], *, binary: bool, description: str) -> DatasetCard:
    return DatasetCard(
        name=name, task="binary" if binary else "multi-label",
        label_names=(f"no {labels[0].lower()}", labels[0].lower()) if binary else labels, channels=1,
        metrics=("accuracy", "auc"), default_metric="accuracy" if binary else "auc", license=LAYOUT.licence_note,
        citation=_CITATION, source=URL, description=description,
        extra={"labels": labels, "layout": LAYOUT.expected, "published_counts": {"train.csv": 223414,
                                                                               "valid.csv": 234},
               "label_rule": "1.0 -> 1; 0.0 and blank -> 0; -1.0 (uncertain) by the 'uncertain' option",
               "options": "uncertain=ones|zeros|ignore (ones); frontal_only=true|false (true); "
                          "split_rule=official|anton2022 (official: train.csv by patient 90/10, valid.csv test); seed"})


CARDS = {
    "chexpert": _card("chexpert", COMPETITION, binary=False,
                      description="CheXpert, the 5 competition labels (multi-label, mean AUC)."),
    "chexpert-14": _card("chexpert-14", LABELS_14, binary=False,
                         description="CheXpert, all 14 labels (multi-label, mean AUC)."),
    "chexpert-effusion": _card("chexpert-effusion", ("Pleural Effusion",), binary=True,
                               description="CheXpert, Pleural Effusion vs not (Anton et al.'s many-to-one target)."),
}


def find(data_root: str | os.PathLike[str] | None) -> Path:
    """The folder holding train.csv."""
    return find_root(default_data_root(data_root), ("CheXpert-v1.0-small", "CheXpert-v1.0", ""), "train.csv",
                     LAYOUT)


def _image_path(root: Path, value: str) -> Path:
    """The CSV's Path ("CheXpert-v1.0-small/train/patient00001/...") under the folder found, whatever its name."""
    parts = Path(value).parts
    return root.joinpath(*parts[1:]) if parts and parts[0].startswith("CheXpert") else root / value


def _patient(value: str) -> str:
    """The patient of a CSV Path (the part named patientNNNNN, wherever the prefix put it)."""
    return next((part for part in Path(value).parts if part.startswith("patient")), value)


def _labels(rows: list[dict[str, str]], columns: tuple[str, ...], csv_name: str, uncertain: str
            ) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) 0/1 labels under the `uncertain` policy, and a (N,) keep mask (False: an uncertain target ignored)."""
    raw = np.zeros((len(rows), len(columns)), np.int64)
    for i, row in enumerate(rows):
        for k, col in enumerate(columns):
            value = row[col]
            if value not in _VALUES:
                raise DataError(f"CheXpert: row {i + 2} of {csv_name} has {value!r} in column {col!r}; the labels "
                                "are 1.0, 0.0, -1.0 (uncertain) or blank. Use the CSV as the download ships it.")
            raw[i, k] = _VALUES[value]
    keep = np.ones(len(rows), bool) if uncertain != "ignore" else ~(raw == -1).any(axis=1)
    return np.where(raw == -1, 1 if uncertain == "ones" else 0, raw).astype(np.uint8), keep


def check(card: DatasetCard, options: dict[str, Any]) -> None:
    allowed = ("uncertain", "frontal_only", "split_rule", "seed")
    unknown = [k for k in options if k not in allowed]
    if unknown:
        raise ConfigError(f"Dataset {card.name!r} takes the options {list(allowed)}; got {unknown}.")
    if options.get("uncertain", "ones") not in UNCERTAIN:
        raise ConfigError(f"The 'uncertain' option of {card.name} must be one of {list(UNCERTAIN)}. "
                          f"Got {options['uncertain']!r} instead.")
    if options.get("split_rule", "official") not in SPLITS:
        raise ConfigError(f"The 'split_rule' option of {card.name} must be one of {list(SPLITS)}. "
                          f"Got {options['split_rule']!r} instead.")


def load_chexpert(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
                  uncertain: str = "ones", frontal_only: bool = True, split_rule: str = "official",
                  seed: int = 0) -> LabelledFiles:
    """One split of a CheXpert task (options in the module docstring)."""
    rule = split_rule
    check(card, {"uncertain": uncertain, "split_rule": rule})
    root = find(data_root)
    columns = CARDS[card.name].extra["labels"]
    header = ("Path", "Frontal/Lateral", *columns)
    if rule == "official" and split == "test":
        table, rows = root / "valid.csv", read_table(root / "valid.csv", header, LAYOUT)
    else:
        table, rows = root / "train.csv", read_table(root / "train.csv", header, LAYOUT)
    if frontal_only:
        rows = [r for r in rows if r["Frontal/Lateral"] == "Frontal"]
    labels, keep = _labels(rows, columns, table.name, uncertain)
    patients = [_patient(r["Path"]) for r in rows]
    if rule == "official":
        names = (np.full(len(rows), "test", dtype=object) if split == "test"
                 else group_split(patients, {"train": 0.9, "val": 0.1}, seed=seed))
    else:  # on the rows the reference reads: frontal_only=False reproduces it
        names = rule_split("anton2022", patients, labels, seed=seed, dataset=card.name)
    every = [_image_path(root, r["Path"]) for r in rows]
    check_files(every, LAYOUT)  # every listed image, not only this split's: a partial copy changes all splits
    take = np.flatnonzero((names == split) & keep)
    paths = [every[i] for i in take]
    y = labels[take] if card.task == "multi-label" else labels[take, 0].astype(np.int64)
    return LabelledFiles(card, split, paths, y, groups=[patients[i] for i in take], sources=[table],
                         options=option_key(uncertain=uncertain, frontal_only=frontal_only, split=rule, seed=seed))


for _card_ in CARDS.values():
    DATASETS.add(_card_.name, DatasetEntry(_card_, load_chexpert, check))
