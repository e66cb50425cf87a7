from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtransfer import data
from medtransfer.data import ArrayDataset, DatasetCard
from medtransfer.errors import ConfigError, DataError, UnknownNameError


@pytest.mark.parametrize("kwargs, match", [
    ({"task": "regression"}, r"'task' parameter of DatasetCard 'd' must be one of"),
    ({"dims": 4}, r"'dims' parameter of DatasetCard 'd' must be 2 or 3"),
    ({"channels": 2}, r"'channels' parameter"),
    ({"label_names": ("only",)}, r"at least two label names"),
    ({"metrics": ("f1",)}, r"metrics must be among"),
])
def test_card_validation(kwargs: dict, match: str) -> None:
    base = {"name": "d", "task": "binary", "label_names": ("a", "b")}
    with pytest.raises(ConfigError, match=match):
        DatasetCard(**(base | kwargs))


def test_array_dataset_checks_lengths_and_masks() -> None:
    card = DatasetCard("d", "binary", ("a", "b"))
    with pytest.raises(DataError, match="3 images but 2 labels"):
        ArrayDataset(card, "train", np.zeros((3, 4, 4, 1), np.uint8), np.zeros(2), fingerprint="f")
    ds = ArrayDataset(card, "train", np.zeros((2, 4, 4, 1), np.uint8), np.zeros(2), fingerprint="f")
    with pytest.raises(DataError, match="has no segmentation masks"):
        ds.masks(np.arange(1))


def test_load_unknown_name_and_split() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'breastmnist'"):
        data.load("breastmnst")
    with pytest.raises(DataError, match=r"has no split 'holdout'; its splits are \['train', 'val', 'test'\]"):
        data.load("phantom-binary-28", "holdout")


def test_a_folder_path_loads_as_user_data(tmp_path: Path) -> None:
    for cls in ("benign", "malignant"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    assert data.is_user_path(str(tmp_path)) and not data.is_user_path("phantom-binary")
    assert data.get_card(str(tmp_path)).label_names == ("benign", "malignant")
    ds = data.load(str(tmp_path), "train")
    assert ds.images(np.arange(2)).shape == (2, 8, 8, 1)


def test_data_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert data.default_data_root() == Path("~/.medmnist").expanduser()
    monkeypatch.setenv("MEDTRANSFER_DATA", str(tmp_path))
    assert data.default_data_root() == tmp_path
    assert data.default_data_root("/x") == Path("/x")


def test_check_options_without_loading(tmp_path: Path) -> None:
    from medtransfer.data.sources import check_options

    check_options("phantom-binary-32", {"n": 10, "lesion_contrast": 0.2})
    check_options("breastmnist", {"download": False})
    with pytest.raises(ConfigError, match=r"Dataset 'breastmnist' takes the options \['download', 'progress'\]; "
                                          r"got \['downlaod'\]. Did you mean 'download'\?"):
        check_options("breastmnist", {"downlaod": False})
    with pytest.raises(ConfigError, match=r"The 'n' option of dataset 'phantom-binary-32' must be an int in the "
                                          r"range \[1, inf\). Got 0 instead."):
        check_options("phantom-binary-32", {"n": 0})
    with pytest.raises(UnknownNameError, match="Did you mean 'lesion_contrast'"):
        check_options("phantom-binary-32", {"lesion_contrst": 0.2})
    (tmp_path / "a").mkdir()
    with pytest.raises(ConfigError, match="got \\['sed'\\]. Did you mean 'seed'"):
        check_options(str(tmp_path), {"sed": 1})
