"""STOIC on a generated tree in the AWS layout: .mha volumes, the middle axial slice in the HU window, labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medtransfer.data import load
from medtransfer.errors import DataError


def make_stoic(root: Path, n: int = 20) -> Path:
    sitk = pytest.importorskip("SimpleITK", reason="STOIC's volumes need SimpleITK (pip install 'medtransfer[stoic]')")
    (root / "metadata").mkdir(parents=True)
    (root / "data" / "mha").mkdir(parents=True)
    lines = ["PatientID,probCOVID,probSevere"]
    for i in range(n):
        volume = np.full((5, 4, 6), -2000, np.int16)  # below the window: 0 after clipping
        volume[2] = np.linspace(-1000, 250, 24).reshape(4, 6).astype(np.int16)  # the middle slice (floor(0.5 * 5))
        volume[2, 0, 0] = 3000  # above the window: 255
        sitk.WriteImage(sitk.GetImageFromArray(volume), str(root / "data" / "mha" / f"{1000 + i}.mha"))
        lines.append(f"{1000 + i},{i % 2},0")
    (root / "metadata" / "reference.csv").write_text("\n".join(lines) + "\n")
    return root


def test_the_middle_slice_in_the_hu_window_and_the_labels(tmp_path: Path) -> None:
    root = make_stoic(tmp_path / "stoic2021-training")
    parts = [load("stoic", s, data_root=tmp_path) for s in ("train", "val", "test")]
    assert sum(len(d) for d in parts) == 20 and parts[0].card.default_metric == "balanced_accuracy"
    image = parts[0].images(np.arange(1))[0]
    expected = np.round((np.linspace(-1000, 250, 24).astype(np.int16).astype(np.float64) + 1000) / 1250 * 255)
    expected[0] = 255  # 3000 HU clipped to 250
    assert image.shape == (4, 6, 1) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0].ravel(), expected.astype(np.uint8))
    table = dict(line.split(",")[:2] for line in (root / "metadata" / "reference.csv").read_text().splitlines()[1:])
    for d in parts:
        assert d.labels.tolist() == [int(table[p.stem]) for p in d.paths]


def test_bad_labels_and_missing_volumes_are_named(tmp_path: Path) -> None:
    root = make_stoic(tmp_path)
    csv = root / "metadata" / "reference.csv"
    text = csv.read_text()
    csv.write_text(text.replace("1000,0,0", "1000,0.7,0"))
    with pytest.raises(DataError, match="row 2 of reference.csv has probCOVID '0.7'"):
        load("stoic", "train", data_root=root)
    csv.write_text(text)
    (root / "data" / "mha" / "1003.mha").unlink()
    with pytest.raises(DataError, match="1 images listed in its CSV are missing"):
        load("stoic", "train", data_root=root)
