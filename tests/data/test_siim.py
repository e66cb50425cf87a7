"""SIIM-ACR on a generated stage-1 tree: the competition's relative RLE, '-1' rows, several regions per image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtransfer.data import load
from medtransfer.data.siim import rle_decode
from medtransfer.errors import DataError


def mask2rle(img: np.ndarray, width: int, height: int) -> str:
    """The competition's encoder (mask_functions.py), line for line; called as mask2rle(mask.T, ...)."""
    rle, last_color, current_pixel, run_start, run_length = [], 0, 0, -1, 0
    for x in range(width):
        for y in range(height):
            current_color = img[x][y]
            if current_color != last_color:
                if current_color == 255:
                    run_start, run_length = current_pixel, 1
                else:
                    rle += [str(run_start), str(run_length)]
                    run_start, run_length, current_pixel = -1, 0, 0
            elif run_start > -1:
                run_length += 1
            last_color = current_color
            current_pixel += 1
    return " ".join(rle)


def test_rle_decode_inverts_the_competition_encoder(rng: np.random.Generator) -> None:
    mask = np.zeros((12, 9), np.uint8)  # (height, width)
    mask[2:5, 3:7] = 255
    mask[8:11, 0:2] = 255
    code = mask2rle(mask.T, 9, 12)
    np.testing.assert_array_equal(rle_decode(code, 9, 12), mask // 255)


def _tree(root: Path, n: int = 10) -> Path:
    (root / "png_images").mkdir(parents=True)
    lines = ["ImageId, EncodedPixels"]
    for i in range(n):
        image_id = f"1.2.276.0.7230010.3.1.4.{i}"
        Image.fromarray(np.full((12, 9), 80, np.uint8)).save(root / "png_images" / f"{image_id}.png")
        if i % 3 == 0:
            lines.append(f"{image_id}, -1")
            continue
        for r in range(1 + i % 2):  # odd images: two regions, two rows
            m = np.zeros((12, 9), np.uint8)
            m[1 + 5 * r:4 + 5 * r, 2:5] = 255
            lines.append(f"{image_id}, {mask2rle(m.T, 9, 12)}")
    (root / "train-rle.csv").write_text("\n".join(lines) + "\n")
    return root


def test_masks_from_the_csv(tmp_path: Path) -> None:
    _tree(tmp_path / "siim")
    ds = {s: load("siim-pneumothorax", s, data_root=tmp_path) for s in ("train", "val", "test")}
    assert sum(len(d) for d in ds.values()) == 10
    names = [n for d in ds.values() for n in d.names]
    assert sorted(names) == sorted(f"1.2.276.0.7230010.3.1.4.{i}" for i in range(10))
    for d in ds.values():
        masks = d.masks(np.arange(len(d)))
        for name, mask in zip(d.names, masks, strict=True):
            i = int(name.rsplit(".", 1)[1])
            assert mask.sum() == (0 if i % 3 == 0 else 9 * (1 + i % 2)), name  # -1: empty; two rows: union


def test_missing_column_and_absent_image(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "train-rle.csv").write_text("ImageId,Mask\nx,-1\n")
    with pytest.raises(DataError, match=r"lacks the column\(s\) \['EncodedPixels'\]"):
        load("siim-pneumothorax", "train", data_root=root)
    (root / "train-rle.csv").write_text("ImageId, EncodedPixels\nnot-there, -1\n")
    with pytest.raises(DataError, match=r"1 image\(s\) listed in train-rle.csv are not under .*\['not-there'\]"):
        load("siim-pneumothorax", "train", data_root=root)
