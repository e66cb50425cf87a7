"""iChallenge-AMD and -PM on generated trees in the downloads' layouts: labels from folders and name prefixes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtransfer.data import load
from medtransfer.errors import DataError


def _jpg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(path, format="JPEG")


def test_amd_from_its_folder(tmp_path: Path) -> None:
    for i in range(1, 11):
        _jpg(tmp_path / "Training400" / "AMD" / f"A{i:04d}.jpg", i)
        _jpg(tmp_path / "Training400" / "Non-AMD" / f"N{i:04d}.jpg", i)
    parts = [load("ichallenge-amd", s, data_root=tmp_path) for s in ("train", "val", "test")]
    assert sum(len(d) for d in parts) == 20
    for d in parts:
        assert d.labels.tolist() == [int(p.parent.name == "AMD") for p in d.paths]
    with pytest.raises(DataError, match="iChallenge-AMD.*images in both AMD/ and Non-AMD/"):
        (tmp_path / "Training400" / "AMD" / "A0001.jpg").unlink()
        for p in (tmp_path / "Training400" / "AMD").iterdir():
            p.unlink()
        load("ichallenge-amd", "train", data_root=tmp_path)


def test_pathologic_myopia_is_the_p_prefix_in_the_nested_zip_layout(tmp_path: Path) -> None:
    folder = tmp_path / "PALM-Training400" / "PALM-Training400"
    for prefix in "PHN":
        for i in range(1, 8):
            _jpg(folder / f"{prefix}{i:04d}.jpg", i)
    parts = [load("ichallenge-pm", s, data_root=tmp_path) for s in ("train", "val", "test")]
    assert sum(len(d) for d in parts) == 21 and sum(int(d.labels.sum()) for d in parts) == 7
    for d in parts:
        assert d.labels.tolist() == [int(p.name.startswith("P")) for p in d.paths]  # high myopia (H) is negative
    _jpg(folder / "X0001.jpg", 1)
    with pytest.raises(DataError, match=r"named P\*, H\* or N\*.jpg.*X0001.jpg"):
        load("ichallenge-pm", "train", data_root=tmp_path)
