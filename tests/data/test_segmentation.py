"""Segmentation cards, mask checks and the seeded split shared by the file-based sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtransfer.data.base import DatasetCard
from medtransfer.data.segmentation import binary_mask, check_values, read_grey, seeded_split, segmentation_card
from medtransfer.errors import ConfigError, DataError


def test_card() -> None:
    card = segmentation_card("x", ("background", "vessel"), channels=3)
    assert card.task == "segmentation" and card.default_metric == "dice" and card.num_classes == 2
    with pytest.raises(ConfigError, match="metrics must be among \\['dice', 'iou'\\]"):
        DatasetCard("y", "segmentation", ("bg", "fg"), metrics=("auc",), default_metric="auc", has_masks=True)
    with pytest.raises(ConfigError, match="segmentation dataset and must have has_masks=True"):
        DatasetCard("y", "segmentation", ("bg", "fg"), metrics=("dice",), default_metric="dice")


def test_seeded_split_partitions(rng: np.random.Generator) -> None:
    parts = [seeded_split(23, s, seed=4) for s in ("train", "val", "test")]
    assert sorted(np.concatenate(parts).tolist()) == list(range(23))
    assert [len(p) for p in parts] == [16, 2, 5]
    np.testing.assert_array_equal(seeded_split(23, "val", seed=4), parts[1])
    # the class folders' rounding: round(0.1 n) to val, round(0.2 n) to test, so 3 images give no val image
    assert [len(seeded_split(3, s, seed=0)) for s in ("train", "val", "test")] == [2, 0, 1]


def test_masks_read_from_palette_gif_and_values_checked(tmp_path: Path) -> None:
    m = np.zeros((4, 5), np.uint8)
    m[1:3, 1:4] = 255
    Image.fromarray(m).convert("P").save(tmp_path / "m.gif")
    np.testing.assert_array_equal(binary_mask(tmp_path / "m.gif"), m // 255)
    assert read_grey(tmp_path / "m.gif").shape == (4, 5)
    assert check_values(np.array([[0, 2]]), 3, "of 'a'").dtype == np.int64
    with pytest.raises(DataError, match=r"The mask of 'a' holds the value\(s\) \[3\], outside the 3 classes"):
        check_values(np.array([[0, 3]]), 3, "of 'a'")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="Cannot read the mask"):
        read_grey(tmp_path / "broken.png")
