"""ChestX-ray14 on a generated tree in the NIH download's layout: the official lists, patients, Anton's 7 classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtransfer.data import load
from medtransfer.data.labelled import leaking_groups
from medtransfer.errors import ConfigError, DataError

HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
FINDINGS = ["Atelectasis", "Cardiomegaly|Effusion", "No Finding", "Pneumonia", "Nodule", "Effusion", "Mass",
            "Infiltration", "Pneumothorax", "Hernia"]


def make_chestxray14(root: Path, n_patients: int = 40) -> Path:
    """Patients with 1-3 images each; the last patient is in neither official list; Kaggle's images_NNN/ folders."""
    lines, train_val, test = [HEADER], [], []
    k = 0
    for p in range(1, n_patients + 1):
        for follow in range(1 + p % 3):
            name = f"{p:08d}_{follow:03d}.png"
            folder = root / f"images_{1 + k % 2:03d}" / "images"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((12, 12), k % 255, np.uint8)).save(folder / name)
            lines.append(f"{name},{FINDINGS[k % len(FINDINGS)]},{follow},{p},58,M,PA,2682,2749,0.143,0.143,")
            if p < n_patients:
                (test if p % 4 == 0 else train_val).append(name)
            k += 1
    (root / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    return root


def test_official_lists_multi_labels_and_patients(tmp_path: Path) -> None:
    root = make_chestxray14(tmp_path)
    parts = [load("chestxray14", s, data_root=root) for s in ("train", "val", "test")]
    listed = len((root / "train_val_list.txt").read_text().split()) + len((root / "test_list.txt").read_text().split())
    assert sum(len(d) for d in parts) == listed  # the patient in neither list is left out
    test_names = set((root / "test_list.txt").read_text().split())
    assert {p.name for p in parts[2].paths} == test_names
    assert leaking_groups(parts) == set() and len(parts[1]) > 0
    labels = parts[0].card.label_names
    findings = dict(r.split(",")[:2] for r in (root / "Data_Entry_2017.csv").read_text().splitlines()[1:])
    for ds in parts:
        for path, y in zip(ds.paths, ds.labels, strict=True):
            expected = {f for f in findings[path.name].split("|") if f != "No Finding"}
            assert {labels[j] for j in np.flatnonzero(y)} == expected  # "No Finding": all zero


def test_antons_seven_classes(tmp_path: Path) -> None:
    root = make_chestxray14(tmp_path)
    train = load("chestxray14-7", "train", data_root=root)
    assert train.card.task == "multi-class" and train.labels.dtype == np.int64
    everything = [load("chestxray14-7", s, data_root=root) for s in ("train", "val", "test")]
    kept = [f for f in (r.split(",")[1] for r in (root / "Data_Entry_2017.csv").read_text().splitlines()[1:])]
    assert sum(len(d) for d in everything) == sum(f in train.card.label_names for f in kept)  # single-label, 7
    seeded = [load("chestxray14-7", s, data_root=root, split_rule="seeded") for s in ("train", "val", "test")]
    assert leaking_groups(seeded) == set()
    with pytest.raises(ConfigError, match="'split_rule' option of chestxray14-7"):
        load("chestxray14-7", "train", data_root=root, split_rule="official")


def test_a_wrong_tree_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Data_Entry_2017.csv.*not found.*nihcc"):
        load("chestxray14", "train", data_root=tmp_path)
    root = make_chestxray14(tmp_path)
    (root / "test_list.txt").unlink()
    with pytest.raises(DataError, match="official split list 'test_list.txt'"):
        load("chestxray14", "train", data_root=root)
    make_chestxray14(root)
    next(root.glob("images_001/images/*.png")).unlink()
    with pytest.raises(DataError, match="1 images listed in its CSV are missing"):
        load("chestxray14", "train", data_root=root)
    text = (root / "Data_Entry_2017.csv").read_text().replace("Hernia", "Hernai")
    (root / "Data_Entry_2017.csv").write_text(text)
    with pytest.raises(DataError, match=r"finding\(s\) \['Hernai'\]"):
        load("chestxray14", "train", data_root=root)
