"""BACH (ICIAR 2018 Grand Challenge on BreAst Cancer Histology): 400 H&E microscopy images, 4 classes of 100.

The folder as the challenge download unpacks (under the data root, or its ``ICIAR2018_BACH_Challenge/``)::

    Photos/microscopy_ground_truth.csv     no header: b001.tif,Benign
    Photos/Benign/b001.tif ...  Photos/InSitu/is001.tif ...  Photos/Invasive/iv001.tif ...  Photos/Normal/n001.tif ...

Classes (Anton et al.'s order): Normal 0, Benign 1, InSitu 2, Invasive 3; the label comes from the ground-truth
CSV and must agree with the image's folder. No official split with labels: a seeded stratified 70/10/20
(``split_rule=seeded``) or Anton et al.'s 80/20 row shuffle (``anton2022``).
"""

from __future__ import annotations

import os

import numpy as np

from medtransfer.data.base import DATASETS, DatasetCard, DatasetEntry, default_data_root
from medtransfer.data.labelled import LabelledFiles, Layout, check_split_options, find_root, read_table, split_files
from medtransfer.errors import DataError

URL = "https://iciar2018-challenge.grand-challenge.org/Dataset/"
LAYOUT = Layout("BACH", "ICIAR2018_BACH_Challenge/Photos/{microscopy_ground_truth.csv, Benign/, InSitu/, Invasive/, "
                "Normal/}", URL, "a grand-challenge.org account and the challenge's licence (CC BY-NC-ND)")
CLASSES = ("Normal", "Benign", "InSitu", "Invasive")
CARD = DatasetCard(name="bach", task="multi-class", label_names=CLASSES, channels=3, license=LAYOUT.licence_note,
                   citation="G. Aresta et al. BACH: Grand challenge on breast cancer histology images. Med. Image "
                            "Anal. 56:122-139 (2019).", source=URL,
                   description="BACH microscopy, 4 classes (normal, benign, in situ, invasive carcinoma).",
                   extra={"layout": LAYOUT.expected, "published_counts": {c: 100 for c in CLASSES},
                          "label_rule": "microscopy_ground_truth.csv: Normal 0, Benign 1, InSitu 2, Invasive 3",
                          "options": "split_rule=seeded|anton2022 (seeded 70/10/20); seed"})


def load_bach(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
              split_rule: str = "seeded", seed: int = 0) -> LabelledFiles:
    """One split of BACH (see the module docstring)."""
    check_split_options(card, {"split_rule": split_rule})
    base = find_root(default_data_root(data_root), ("", "ICIAR2018_BACH_Challenge"), "Photos", LAYOUT)
    photos = base / "Photos"
    table = photos / "microscopy_ground_truth.csv"
    rows = read_table(table, ("file", "label"), LAYOUT, header=False)
    bad = [(i + 1, r["label"]) for i, r in enumerate(rows) if r["label"] not in CLASSES]
    if bad:
        raise DataError(f"BACH: row {bad[0][0]} of {table.name} has the label {bad[0][1]!r}; labels are "
                        f"{list(CLASSES)}.")
    paths = [photos / r["label"] / r["file"] for r in rows]
    y = np.array([CLASSES.index(r["label"]) for r in rows], np.int64)
    return split_files(card, split, paths, y, rule=split_rule, seed=seed, layout=LAYOUT, sources=[table])


DATASETS.add(CARD.name, DatasetEntry(CARD, load_bach, check_split_options))
