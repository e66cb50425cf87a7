"""Montgomery lung masks on a generated tree with the NLM file names: the union of the left and right masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtransfer.data import load
from medtransfer.errors import DataError


def _tree(root: Path, n: int = 10) -> Path:
    for sub in ("CXR_png", "ManualMask/leftMask", "ManualMask/rightMask", "ClinicalReadings"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        name = f"MCUCXR_{i:04d}_{i % 2}.png"
        Image.fromarray(np.full((8, 10), 50 + i, np.uint8)).save(root / "CXR_png" / name)
        left, right = np.zeros((8, 10), np.uint8), np.zeros((8, 10), np.uint8)
        left[2:6, 1:4], right[2:6, 6:9] = 255, 255
        Image.fromarray(left).save(root / "ManualMask" / "leftMask" / name)
        Image.fromarray(right).save(root / "ManualMask" / "rightMask" / name)
        (root / "ClinicalReadings" / name.replace(".png", ".txt")).write_text("Patient's Sex: F\nnormal\n")
    return root


def test_lungs_are_the_union_of_both_masks(tmp_path: Path) -> None:
    _tree(tmp_path / "NLM-MontgomeryCXRSet" / "MontgomerySet")
    splits = {s: load("montgomery-lungs", s, data_root=tmp_path) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [7, 1, 2]
    ds = splits["train"]
    mask = ds.masks(np.arange(1))[0]
    assert mask[2:6, 1:4].all() and mask[2:6, 6:9].all() and mask.sum() == 24  # both lungs, nothing else
    assert ds.images(np.arange(1)).shape == (1, 8, 10, 1)


def test_a_missing_half_mask_is_named(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "ManualMask" / "rightMask" / "MCUCXR_0003_1.png").unlink()
    with pytest.raises(DataError, match=r"1 lung mask file\(s\) are missing.*rightMask/MCUCXR_0003_1.png"):
        load("montgomery-lungs", "train", data_root=root)
    with pytest.raises(DataError, match="expected CXR_png/ and ManualMask/leftMask|rightMask/"):
        load("montgomery-lungs", "train", data_root=tmp_path / "nowhere")


def test_the_tb_task_reads_its_label_from_the_file_name(tmp_path: Path) -> None:
    _tree(tmp_path / "NLM-MontgomeryCXRSet" / "MontgomerySet", n=20)
    parts = [load("montgomery-tb", s, data_root=tmp_path) for s in ("train", "val", "test")]
    assert sum(len(d) for d in parts) == 20 and parts[0].card.task == "binary"
    for d in parts:
        assert [int(p.stem[-1]) for p in d.paths] == d.labels.tolist()  # MCUCXR_0001_1.png: tuberculosis
    assert {int(y) for d in parts[1:] for y in d.labels} == {0, 1}  # stratified: both classes in val and test
