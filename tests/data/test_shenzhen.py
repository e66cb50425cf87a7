"""Shenzhen TB on a generated tree with the NLM file names: labels from the name, seeded and Anton's splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtransfer.data import load
from medtransfer.data.labelled import shuffled_split
from medtransfer.errors import ConfigError, DataError


def make_shenzhen(root: Path, n: int = 30) -> Path:
    folder = root / "ChinaSet_AllFiles" / "CXR_png"
    folder.mkdir(parents=True)
    (root / "ChinaSet_AllFiles" / "ClinicalReadings").mkdir()
    for i in range(1, n + 1):
        Image.fromarray(np.full((9, 7), i, np.uint8)).save(folder / f"CHNCXR_{i:04d}_{int(i % 3 == 0)}.png")
    return root


def test_labels_come_from_the_name_and_the_splits_are_stratified(tmp_path: Path) -> None:
    root = make_shenzhen(tmp_path)
    parts = {s: load("shenzhen", s, data_root=root) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [21, 3, 6]  # 70/10/20 of 20 normal and 10 TB
    for d in parts.values():
        assert d.labels.tolist() == [int(p.stem.endswith("_1")) for p in d.paths]
    assert parts["test"].labels.sum() == 2 and parts["val"].labels.sum() == 1
    assert parts["train"].images(np.arange(1)).shape == (1, 9, 7, 1)
    again = load("shenzhen", "test", data_root=root)
    assert again.paths == parts["test"].paths and again.fingerprint == parts["test"].fingerprint  # seeded
    assert load("shenzhen", "test", data_root=root, seed=1).paths != parts["test"].paths


def test_antons_split(tmp_path: Path) -> None:
    root = make_shenzhen(tmp_path)
    test = load("shenzhen", "test", data_root=root, split_rule="anton2022")
    names = sorted((root / "ChinaSet_AllFiles" / "CXR_png").glob("*.png"))
    assert [p.name for p in test.paths] == [names[i].name for i in np.flatnonzero(shuffled_split(30) == "test")]


def test_bad_trees_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Shenzhen: 'CXR_png' not found.*ChinaSet_AllFiles.*lhncbc"):
        load("shenzhen", "train", data_root=tmp_path)
    root = make_shenzhen(tmp_path)
    (root / "ChinaSet_AllFiles" / "CXR_png" / "CHNCXR_9999_x.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"\['CHNCXR_9999_x.png'\] do not end in _0"):
        load("shenzhen", "train", data_root=root)
    with pytest.raises(ConfigError, match="'split_rule' option of shenzhen"):
        load("shenzhen", "train", data_root=root, split_rule="official")
