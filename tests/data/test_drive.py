"""DRIVE: the official layout on a generated tree, and the real set in ../shared/data/drive when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtransfer.data import load
from medtransfer.errors import DataError

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "drive"


def _tree(root: Path, n_train: int = 20, n_test: int = 3, size: tuple[int, int] = (12, 10)) -> Path:
    """DRIVE's file names and formats (RGB TIFF images, 0/255 GIF masks), tiny images."""
    rng = np.random.default_rng(0)
    for official, numbers in (("training", range(21, 21 + n_train)), ("test", range(1, 1 + n_test))):
        for sub in ("images", "1st_manual", "mask"):
            (root / official / sub).mkdir(parents=True, exist_ok=True)
        for n in numbers:
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(
                root / official / "images" / f"{n:02d}_{official}.tif")
            vessel = (rng.random(size) < 0.2).astype(np.uint8) * 255
            Image.fromarray(vessel).save(root / official / "1st_manual" / f"{n:02d}_manual1.gif")
            fov = np.zeros(size, np.uint8)
            fov[2:-2, 2:-2] = 255
            Image.fromarray(fov).save(root / official / "mask" / f"{n:02d}_{official}_mask.gif")
    return root


def test_official_layout_splits_masks_and_fov(tmp_path: Path) -> None:
    root = _tree(tmp_path / "DRIVE")
    splits = {s: load("drive", s, data_root=tmp_path) for s in ("train", "val", "test")}  # finds DRIVE/ inside
    assert [len(splits[s]) for s in ("train", "val", "test")] == [16, 4, 3]
    names = [p.name for s in ("train", "val") for p in splits[s].paths]
    assert sorted(names) == [f"{n}_training.tif" for n in range(21, 41)]  # train and val share no image
    again = load("drive", "val", data_root=root, seed=0)
    assert [p.name for p in again.paths] == [p.name for p in splits["val"].paths]  # seeded
    assert [p.name for p in load("drive", "val", data_root=root, seed=1).paths] != names[16:]
    ds = splits["test"]
    images, masks, fov = ds.images(np.arange(3)), ds.masks(np.arange(3)), ds.fov(np.arange(3))
    assert images.shape == (3, 12, 10, 3) and masks.shape == (3, 12, 10) and fov.dtype == bool
    truth = np.asarray(Image.open(root / "test" / "1st_manual" / "01_manual1.gif")) > 0
    np.testing.assert_array_equal(masks[0], truth.astype(np.int64))
    assert fov[0, 2:-2, 2:-2].all() and not fov[0, :2].any()


def test_wrong_layout_and_missing_masks_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"DRIVE is not in .* expected training/images.*drive.grand-challenge.org"):
        load("drive", "train", data_root=tmp_path)
    root = _tree(tmp_path / "d")
    (root / "test" / "mask" / "02_test_mask.gif").unlink()
    with pytest.raises(DataError, match=r"lacks 1 mask file.*02_test_mask.gif"):
        load("drive", "test", data_root=root)


@pytest.mark.skipif(not REAL.is_dir(), reason="the real DRIVE set is not in ../shared/data/drive")
def test_the_real_set() -> None:
    ds = load("drive", "test", data_root=REAL)
    images, masks, fov = ds.images(np.arange(2)), ds.masks(np.arange(2)), ds.fov(np.arange(2))
    assert len(ds) == 20 and images.shape == (2, 584, 565, 3)
    assert set(np.unique(masks)) == {0, 1} and 0.05 < masks.mean() < 0.2 and 0.6 < fov.mean() < 0.75
    assert not masks[~fov].any() or masks[~fov].mean() < 0.01  # vessels lie inside the field of view
