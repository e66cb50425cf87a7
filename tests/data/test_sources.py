"""A dataset name leads to the registry, a classification folder or a segmentation folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtransfer.data import get_card, is_user_path, load
from medtransfer.errors import DataError, UnknownNameError


def test_dispatch(tmp_path: Path) -> None:
    cls, seg = tmp_path / "cls", tmp_path / "seg"
    for label in ("a", "b"):
        (cls / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(cls / label / f"{i}.png")
    for sub in ("images", "masks"):
        (seg / sub).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(seg / "images" / f"{i}.png")
        Image.fromarray(np.eye(4, dtype=np.uint8)).save(seg / "masks" / f"{i}.png")
    assert is_user_path(str(cls)) and not is_user_path("breastmnist")
    assert get_card(str(cls)).task == "binary" and get_card(str(seg)).task == "segmentation"
    assert load(str(seg), "test").masks(np.arange(1)).shape == (1, 4, 4)
    assert get_card("drive").task == "segmentation"
    with pytest.raises(UnknownNameError, match="Did you mean 'breastmnist'"):
        load("breastmnst")
    with pytest.raises(DataError, match="has no split 'holdout'"):
        load("phantom-binary-28", "holdout")
