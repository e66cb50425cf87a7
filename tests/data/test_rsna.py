"""RSNA Pneumonia on a generated tree in Kaggle's layout: one image per patient, pneumonia if any box."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtransfer.data import load
from medtransfer.data.labelled import leaking_groups
from medtransfer.errors import DataError


def make_rsna(root: Path, n: int = 30) -> Path:
    (root / "stage_2_train_images").mkdir(parents=True)
    lines = ["patientId,x,y,width,height,Target"]
    for i in range(n):
        pid = f"{i:04d}abcd-{i}"
        (root / "stage_2_train_images" / f"{pid}.dcm").write_bytes(b"DICM")  # paths only: nothing decodes here
        if i % 3 == 0:  # two boxes for one patient
            lines += [f"{pid},264.0,152.0,213.0,379.0,1", f"{pid},562.0,152.0,256.0,453.0,1"]
        else:
            lines.append(f"{pid},,,,,0")
    (root / "stage_2_train_labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_one_image_per_patient_and_any_box_is_pneumonia(tmp_path: Path) -> None:
    make_rsna(tmp_path)
    parts = [load("rsna-pneumonia", s, data_root=tmp_path) for s in ("train", "val", "test")]
    assert sum(len(d) for d in parts) == 30 and leaking_groups(parts) == set()  # 40 rows, 30 patients
    assert sum(int(d.labels.sum()) for d in parts) == 10
    for d in parts:
        assert d.labels.tolist() == [int(int(p.stem.split("-")[1]) % 3 == 0) for p in d.paths]


def test_a_target_outside_the_rule_is_named(tmp_path: Path) -> None:
    make_rsna(tmp_path)
    csv = tmp_path / "stage_2_train_labels.csv"
    csv.write_text(csv.read_text().replace(",,,,,0", ",,,,,2", 1))
    with pytest.raises(DataError, match="has Target '2'; it is 0 or 1"):
        load("rsna-pneumonia", "train", data_root=tmp_path)
