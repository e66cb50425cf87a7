"""Folder and CSV sources: the three layouts, the seeded split, decoding, and every error message."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtransfer.data.base import DatasetCard, ImageDataset
from medtransfer.data.folder import FolderDataset, folder_card, folder_dataset, read_image, stratified_split
from medtransfer.errors import DataError


def _png(path: Path, *, size: tuple[int, int] = (8, 8), mode: str = "L", value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 255 - value, 7)).save(path)
    return path


def _class_tree(root: Path, counts: dict[str, int]) -> Path:
    """root/<class>/img_<k>.png, each image a constant grey value k."""
    for name, n in counts.items():
        for k in range(n):
            _png(root / name / f"img_{k:02d}.png", value=k)
    return root


def _stacked(ds: ImageDataset, index: np.ndarray) -> np.ndarray:
    """ds.images(index), checked to be one stacked array rather than a list."""
    images = ds.images(index)
    assert isinstance(images, np.ndarray), f"expected one stacked array, got a list of {len(images)}"
    return images


def _all_splits(path: Path, **kwargs: object) -> dict[str, FolderDataset]:
    return {s: folder_dataset(path, s, **kwargs) for s in ("train", "val", "test")}  # type: ignore[arg-type]


# ---- layout (a): root/<class>/<files>, seeded stratified split ---------------------------------------------


def test_class_folders_card(tmp_path: Path) -> None:
    root = _class_tree(tmp_path / "xr", {"normal": 10, "pneumonia": 20})
    card = folder_card(root)
    assert card.name == f"folder:{root.resolve()}"
    assert card.label_names == ("normal", "pneumonia")
    assert (card.task, card.channels, card.image_size) == ("binary", 1, None)
    assert card.splits == ("train", "val", "test")


def test_seeded_split_is_stratified_disjoint_and_complete(tmp_path: Path) -> None:
    root = _class_tree(tmp_path / "xr", {"a": 10, "b": 20, "c": 30})
    parts = _all_splits(root, seed=3)
    # Per class n: val round(0.1 n), test round(0.2 n), train the rest -> a 7/1/2, b 14/2/4, c 21/3/6.
    assert np.bincount(parts["train"].labels).tolist() == [7, 14, 21]
    assert np.bincount(parts["val"].labels).tolist() == [1, 2, 3]
    assert np.bincount(parts["test"].labels).tolist() == [2, 4, 6]
    paths = [p for ds in parts.values() for p in ds.paths]
    assert len(paths) == len(set(paths)) == 60
    assert set(paths) == {p.resolve() for p in root.rglob("*.png")}
    for ds in parts.values():  # every path keeps the label of its folder
        assert all(ds.card.label_names[y] == p.parent.name for p, y in zip(ds.paths, ds.labels, strict=True))


def test_seeded_split_is_deterministic_and_depends_on_seed(tmp_path: Path) -> None:
    root = _class_tree(tmp_path / "xr", {"a": 10, "b": 20})
    assert folder_dataset(root, "test", seed=1).paths == folder_dataset(root, "test", seed=1).paths
    assert folder_dataset(root, "test", seed=1).paths != folder_dataset(root, "test", seed=2).paths


def test_stratified_split_small_case() -> None:
    # Class 0 has 10 items: 7 train, 1 val, 2 test; class 1 has 1 item: round(0.1) = round(0.2) = 0 -> train.
    labels = np.array([0] * 10 + [1])
    out = stratified_split(labels, seed=0)
    assert sorted(out[:10].tolist()) == ["test"] * 2 + ["train"] * 7 + ["val"]
    assert out[10] == "train"


def test_hidden_and_non_image_files_are_ignored(tmp_path: Path) -> None:
    root = _class_tree(tmp_path / "xr", {"a": 5, "b": 5})
    _png(root / "a" / ".hidden.png")
    _png(root / "a" / ".ipynb_checkpoints" / "img_00.png")
    (root / "a" / "notes.txt").write_text("not an image")
    (root / ".git").mkdir()
    assert folder_card(root).extra["n_images"] == 10


# ---- layout (b): root/<split>/<class>/<files> ------------------------------------------------------------


def test_split_folders_use_the_declared_split(tmp_path: Path) -> None:
    _class_tree(tmp_path / "d" / "train", {"benign": 3, "malignant": 2})
    _class_tree(tmp_path / "d" / "test", {"benign": 1, "malignant": 2})
    card = folder_card(tmp_path / "d")
    assert card.splits == ("train", "test")
    test = folder_dataset(tmp_path / "d", "test")
    assert test.labels.tolist() == [0, 1, 1]
    assert all(p.parts[-3] == "test" for p in test.paths)
    assert len(folder_dataset(tmp_path / "d", "train")) == 5


def test_missing_split_lists_the_splits_it_has(tmp_path: Path) -> None:
    _class_tree(tmp_path / "d" / "train", {"a": 2, "b": 2})
    _class_tree(tmp_path / "d" / "test", {"a": 2, "b": 2})
    with pytest.raises(DataError, match=r"has no split 'val'; its splits are \['train', 'test'\]"):
        folder_dataset(tmp_path / "d", "val")


def test_split_folders_mixed_with_class_folders_are_refused(tmp_path: Path) -> None:
    _class_tree(tmp_path / "d" / "train", {"a": 2, "b": 2})
    _class_tree(tmp_path / "d", {"extra": 2})
    with pytest.raises(DataError, match=r"mixes split folders \['train'\] with other folders \['extra'\]"):
        folder_card(tmp_path / "d")


# ---- layout (c): CSV -------------------------------------------------------------------------------------


def test_csv_with_split_relative_and_absolute_paths(tmp_path: Path) -> None:
    a = _png(tmp_path / "imgs" / "a.png")
    b = _png(tmp_path / "elsewhere" / "b.png")
    _png(tmp_path / "imgs" / "c.png")
    csv = tmp_path / "labels.csv"
    csv.write_text(f"path,label,split\nimgs/a.png,cat,train\n{b},dog,train\nimgs/c.png,cow,test\n")
    card = folder_card(csv)
    assert card.label_names == ("cat", "cow", "dog")
    assert (card.task, card.splits) == ("multi-class", ("train", "test"))
    train = folder_dataset(csv, "train")
    assert train.paths == (a.resolve(), b.resolve())
    assert train.labels.tolist() == [0, 2]
    assert folder_dataset(csv, "test").labels.tolist() == [1]


def test_csv_without_split_uses_the_seeded_split(tmp_path: Path) -> None:
    rows = [f"img{k}.png,{'ab'[k % 2]}" for k in range(20)]
    for k in range(20):
        _png(tmp_path / f"img{k}.png")
    (tmp_path / "l.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    parts = _all_splits(tmp_path / "l.csv")
    assert [len(ds) for ds in parts.values()] == [14, 2, 4]


def test_given_label_names_set_the_order(tmp_path: Path) -> None:
    root = _class_tree(tmp_path / "xr", {"normal": 4, "abnormal": 4})
    ds = folder_dataset(root, "train", label_names=["normal", "abnormal"], name="xr")
    assert ds.card.name == "xr"
    assert all(ds.card.label_names[y] == p.parent.name for p, y in zip(ds.paths, ds.labels, strict=True))
    assert ds.labels[[p.parent.name == "normal" for p in ds.paths]].tolist() == [0, 0, 0]


# ---- decoding --------------------------------------------------------------------------------------------


def test_same_sizes_stack_and_mixed_sizes_give_a_list(tmp_path: Path) -> None:
    _png(tmp_path / "d" / "a" / "0.png", size=(8, 6))
    _png(tmp_path / "d" / "a" / "1.png", size=(8, 6))
    _png(tmp_path / "d" / "b" / "2.png", size=(5, 5))
    csv = tmp_path / "d" / "l.csv"
    csv.write_text("path,label,split\na/0.png,a,train\na/1.png,a,train\nb/2.png,b,train\n")
    ds = folder_dataset(csv, "train")
    same = ds.images(np.array([0, 1]))
    assert isinstance(same, np.ndarray) and same.shape == (2, 6, 8, 1) and same.dtype == np.uint8
    mixed = ds.images(np.arange(3))
    assert isinstance(mixed, list) and [a.shape for a in mixed] == [(6, 8, 1), (6, 8, 1), (5, 5, 1)]


def test_channels_follow_the_first_image_or_the_argument(tmp_path: Path) -> None:
    _png(tmp_path / "d" / "a" / "0.png", mode="RGB", value=200)
    _png(tmp_path / "d" / "b" / "1.png", value=50)
    csv = tmp_path / "d" / "l.csv"
    csv.write_text("path,label,split\na/0.png,a,test\nb/1.png,b,test\n")
    rgb = folder_dataset(csv, "test")
    assert rgb.card.channels == 3
    x = _stacked(rgb, np.arange(2))
    assert x.shape == (2, 8, 8, 3)
    assert x[0, 0, 0].tolist() == [200, 55, 7] and x[1, 0, 0].tolist() == [50, 50, 50]  # grey -> RGB repeats
    grey = _stacked(folder_dataset(csv, "test", channels=1), np.arange(2))
    # PIL's L = (299 R + 587 G + 114 B) / 1000: 0.299*200 + 0.587*55 + 0.114*7 = 92.8 -> 93.
    assert grey.shape == (2, 8, 8, 1) and grey[0, 0, 0, 0] == 93 and grey[1, 0, 0, 0] == 50


def test_16_bit_images_are_min_max_scaled_per_image(tmp_path: Path) -> None:
    raw = np.array([[1000, 2000], [3000, 5000]], dtype=np.uint16)
    Image.fromarray(raw).save(tmp_path / "x16.png")
    out = read_image(tmp_path / "x16.png", 1)
    # (v - 1000) / 4000 * 255: 0, 63.75, 127.5, 255 -> rounded 0, 64, 128, 255.
    assert out.dtype == np.uint8 and out[..., 0].tolist() == [[0, 64], [128, 255]]


def test_fingerprint_tracks_split_labels_and_files(tmp_path: Path) -> None:
    root = _class_tree(tmp_path / "xr", {"a": 10, "b": 10})
    train = folder_dataset(root, "train")
    assert train.fingerprint == folder_dataset(root, "train").fingerprint
    assert train.fingerprint != folder_dataset(root, "test").fingerprint
    assert train.fingerprint != folder_dataset(root, "train", label_names=["b", "a"]).fingerprint
    stat = train.paths[0].stat()
    os.utime(train.paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert train.fingerprint != folder_dataset(root, "train").fingerprint


# ---- errors ----------------------------------------------------------------------------------------------


def test_corrupt_image_is_named_when_decoded(tmp_path: Path) -> None:
    root = _class_tree(tmp_path / "xr", {"a": 2, "b": 2})
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    csv = tmp_path / "l.csv"
    csv.write_text(f"path,label,split\n{root}/a/img_00.png,a,test\n{root}/b/broken.png,b,test\n")
    ds = folder_dataset(csv, "test")  # listing the files does not decode them
    assert _stacked(ds, np.array([0])).shape == (1, 8, 8, 1)
    with pytest.raises(DataError, match=r"Cannot decode image '.*broken\.png'.*corrupt"):
        ds.images(np.array([0, 1]))


def test_empty_class_folder_is_named(tmp_path: Path) -> None:
    root = _class_tree(tmp_path / "xr", {"a": 2, "b": 2})
    (root / "c").mkdir()
    (root / "c" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder '.*xr/c' holds no image files"):
        folder_card(root)


def test_folder_label_not_in_label_names(tmp_path: Path) -> None:
    root = _class_tree(tmp_path / "xr", {"cat": 2, "dog": 2})
    with pytest.raises(DataError, match=r"Label 'dog' of folder '.*xr/dog' is not among .*\['cat', 'cow'\]"):
        folder_dataset(root, "train", label_names=["cat", "cow"])


def test_csv_label_not_in_label_names_names_the_row(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    (tmp_path / "l.csv").write_text("path,label\na.png,cat\nb.png,bird\n")
    with pytest.raises(DataError, match=r"Label 'bird' of row 2 of '.*l\.csv' is not among .*\['cat', 'dog'"):
        folder_card(tmp_path / "l.csv", label_names=["cat", "dog"])


def test_csv_missing_columns_lists_its_columns(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("file,label\na.png,cat\n")
    with pytest.raises(DataError, match=r"columns 'path' and 'label'.*Its columns are \['file', 'label'\]"):
        folder_card(tmp_path / "l.csv")


def test_csv_path_that_does_not_exist_names_row_and_path(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("path,label\na.png,cat\nmissing.png,dog\n")
    with pytest.raises(DataError, match=r"image 'missing\.png' in row 2 of '.*l\.csv' does not exist"):
        folder_card(tmp_path / "l.csv")


def test_csv_bad_split_value(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("path,label,split\na.png,cat,training\n")
    with pytest.raises(DataError, match=r"split 'training' in row 1 .* one of \['train', 'val', 'test'\]"):
        folder_card(tmp_path / "l.csv")


def test_path_neither_folder_nor_csv(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("path,label\n")
    with pytest.raises(DataError, match=r"labels\.txt' is neither a folder nor a \.csv file"):
        folder_card(tmp_path / "labels.txt")
    with pytest.raises(DataError, match=r"nowhere' does not exist"):
        folder_card(tmp_path / "nowhere")


def test_single_class_is_refused(tmp_path: Path) -> None:
    root = _class_tree(tmp_path / "xr", {"only": 3})
    with pytest.raises(DataError, match=r"single class \['only'\]; .* needs at least two"):
        folder_card(root)


def test_dicom_without_pydicom_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "scan.dcm").write_bytes(b"\0" * 132)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # `import pydicom` now raises ImportError
    with pytest.raises(DataError, match=r"scan\.dcm' needs pydicom.*pip install 'medtransfer\[dicom\]'"):
        read_image(tmp_path / "scan.dcm", 1)


def test_folder_dataset_accepts_a_fixed_card(tmp_path: Path) -> None:
    root = _class_tree(tmp_path / "xr", {"b": 5, "a": 5})
    card = DatasetCard(name="fixed", task="multi-class", label_names=("b", "a", "c"), channels=3)
    ds = folder_dataset(root, "train", card=card)
    assert ds.card is card
    assert _stacked(ds, np.array([0])).shape == (1, 8, 8, 3)
    assert all(card.label_names[y] == p.parent.name for p, y in zip(ds.paths, ds.labels, strict=True))
