"""BACH on a generated tree in the challenge's layout: labels from the headerless ground truth, splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtransfer.data import load
from medtransfer.data.bach import CLASSES
from medtransfer.errors import DataError

PREFIX = {"Normal": "n", "Benign": "b", "InSitu": "is", "Invasive": "iv"}


def make_bach(root: Path, per_class: int = 10) -> Path:
    photos = root / "ICIAR2018_BACH_Challenge" / "Photos"
    lines = []
    for label in CLASSES:
        (photos / label).mkdir(parents=True)
        for i in range(1, per_class + 1):
            name = f"{PREFIX[label]}{i:03d}.tif"
            Image.fromarray(np.full((5, 5, 3), i, np.uint8)).save(photos / label / name)
            lines.append(f"{name},{label}")
    (photos / "microscopy_ground_truth.csv").write_text("\n".join(lines) + "\n")
    return root


def test_four_classes_in_antons_order_and_a_stratified_split(tmp_path: Path) -> None:
    root = make_bach(tmp_path)
    parts = {s: load("bach", s, data_root=root) for s in ("train", "val", "test")}
    assert parts["train"].card.label_names == ("Normal", "Benign", "InSitu", "Invasive")
    assert np.bincount(parts["test"].labels, minlength=4).tolist() == [2, 2, 2, 2]
    for d in parts.values():
        assert [CLASSES[y] for y in d.labels] == [p.parent.name for p in d.paths]
    assert parts["train"].images(np.arange(1)).shape == (1, 5, 5, 3)


def test_a_label_outside_the_classes_and_a_missing_image_are_named(tmp_path: Path) -> None:
    root = make_bach(tmp_path)
    table = root / "ICIAR2018_BACH_Challenge" / "Photos" / "microscopy_ground_truth.csv"
    text = table.read_text()
    table.write_text(text.replace("n001.tif,Normal", "n001.tif,Normall"))
    with pytest.raises(DataError, match="row 1 of microscopy_ground_truth.csv has the label 'Normall'"):
        load("bach", "train", data_root=root)
    table.write_text(text)
    (root / "ICIAR2018_BACH_Challenge" / "Photos" / "Benign" / "b003.tif").unlink()
    with pytest.raises(DataError, match="1 images listed in its CSV are missing"):
        load("bach", "test", data_root=root)
