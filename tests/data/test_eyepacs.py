"""EyePACS on a generated tree in Kaggle's layout: grades, the referable rule, both eyes in one split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtransfer.data import load
from medtransfer.data.labelled import leaking_groups
from medtransfer.errors import DataError


def make_eyepacs(root: Path, n_patients: int = 30, test_name: str = "retinopathy_solution.csv") -> Path:
    rng = np.random.default_rng(0)
    for split, table, offset in (("train", "trainLabels.csv", 10), ("test", test_name, 1)):
        (root / split).mkdir(parents=True, exist_ok=True)
        lines = ["image,level" + (",Usage" if table == "retinopathy_solution.csv" else "")]
        for p in range(offset, offset + n_patients):
            for eye in ("left", "right"):
                name = f"{p}_{eye}"
                Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).save(root / split / f"{name}.jpeg",
                                                                                   format="JPEG")
                usage = ",Public" if table == "retinopathy_solution.csv" else ""
                lines.append(f"{name},{(p + (eye == 'right')) % 5}{usage}")
        (root / table).write_text("\n".join(lines) + "\n")
    return root


def test_grades_referable_rule_and_eye_pairs(tmp_path: Path) -> None:
    root = make_eyepacs(tmp_path)
    parts = [load("eyepacs", s, data_root=root) for s in ("train", "val", "test")]
    assert [len(d) for d in parts] == [54, 6, 60] and parts[0].card.task == "ordinal"
    assert leaking_groups(parts[:2]) == set()  # a patient's two eyes never straddle train and val
    for d in parts:
        assert all(d.groups.count(g) == 2 for g in d.groups)  # type: ignore[union-attr]
    referable = load("eyepacs-referable", "test", data_root=root)
    assert referable.labels.tolist() == [int(g >= 2) for g in parts[2].labels]
    assert parts[2].images(np.arange(2)).shape == (2, 6, 6, 3)


def test_antons_test_labels_file_is_read_too(tmp_path: Path) -> None:
    root = make_eyepacs(tmp_path, test_name="testLabels.csv")
    assert len(load("eyepacs", "test", data_root=root)) == 60


def test_bad_levels_and_trees_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="EyePACS: 'trainLabels.csv' not found.*kaggle"):
        load("eyepacs", "train", data_root=tmp_path)
    root = make_eyepacs(tmp_path)
    (root / "retinopathy_solution.csv").unlink()
    with pytest.raises(DataError, match="test labels 'retinopathy_solution.csv'"):
        load("eyepacs", "test", data_root=root)
    text = (root / "trainLabels.csv").read_text()
    (root / "trainLabels.csv").write_text(text.replace("10_left,0", "10_left,7"))
    with pytest.raises(DataError, match="row 2 of trainLabels.csv has the level '7'"):
        load("eyepacs", "train", data_root=root)
