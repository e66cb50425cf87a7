"""User segmentation folders: layouts, class inference, and the errors a user meets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtransfer.data import get_card, load
from medtransfer.errors import DataError


def _pair(folder: Path, name: str, mask: np.ndarray, *, size: tuple[int, int] | None = None, ext: str = ".png") -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    h, w = size or mask.shape
    Image.fromarray(np.full((h, w), 100, np.uint8)).save(folder / "images" / f"{name}.png")
    Image.fromarray(mask.astype(np.uint8)).save(folder / "masks" / f"{name}{ext}")


def test_flat_layout_with_binary_255_masks_and_a_seeded_split(tmp_path: Path) -> None:
    for i in range(10):
        m = np.zeros((6, 8), np.uint8)
        m[i % 6, :] = 255
        _pair(tmp_path, f"case{i}", m, ext=".gif" if i % 2 else ".png")
    card = get_card(str(tmp_path))
    assert card.task == "segmentation" and card.label_names == ("background", "class 1") and card.channels == 1
    splits = {s: load(str(tmp_path), s) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [7, 1, 2]
    assert sorted(n for s in splits.values() for n in s.names) == sorted(f"case{i}" for i in range(10))
    ds = splits["train"]
    masks = ds.masks(np.arange(len(ds)))
    assert set(np.unique(masks)) == {0, 1} and masks.shape == (7, 6, 8)  # 255 read as class 1
    assert ds.images(np.arange(2)).shape == (2, 6, 8, 1)


def test_split_folders_and_declared_classes(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("test", 2)):
        for i in range(n):
            _pair(tmp_path / split, f"{split}{i}", np.arange(48).reshape(6, 8) % 3)
    card = get_card(str(tmp_path))
    assert card.splits == ("train", "test") and card.label_names == ("background", "class 1", "class 2")
    ds = load(str(tmp_path), "test", class_names=["bg", "liver", "tumour"])
    assert ds.card.label_names == ("bg", "liver", "tumour") and len(ds) == 2
    with pytest.raises(DataError, match="has no 'val' split; it has \\['train', 'test'\\]"):
        load(str(tmp_path), "val")


def test_errors_name_the_file(tmp_path: Path) -> None:
    _pair(tmp_path, "a", np.zeros((6, 8)))
    (tmp_path / "images" / "lonely.png").write_bytes((tmp_path / "images" / "a.png").read_bytes())
    with pytest.raises(DataError, match=r"1 image\(s\) in .* have no mask of the same name .*\['lonely'\]"):
        load(str(tmp_path), "train")
    (tmp_path / "images" / "lonely.png").unlink()
    _pair(tmp_path, "big", np.zeros((6, 8)), size=(12, 16))
    _pair(tmp_path, "c", np.zeros((6, 8)))
    split = next(s for s in ("train", "val", "test") if "big" in load(str(tmp_path), s, class_names=["b", "f"]).names)
    ds = load(str(tmp_path), split, class_names=["bg", "fg"])
    with pytest.raises(DataError, match=r"The mask of 'big' is 8x6 \(WxH\) but its image .*big.png' is 16x12"):
        ds.masks(np.arange(len(ds)))
    for f in (tmp_path / "images" / "big.png", tmp_path / "masks" / "big.png"):
        f.unlink()
    _pair(tmp_path, "bad", np.full((6, 8), 7))
    split = next(s for s in ("train", "val", "test") if "bad" in load(str(tmp_path), s, class_names=["b", "f"]).names)
    ds = load(str(tmp_path), split, class_names=["bg", "fg"])
    with pytest.raises(DataError, match=r"The mask of 'bad' holds the value\(s\) \[7\], outside the 2 classes"):
        ds.masks(np.arange(len(ds)))
