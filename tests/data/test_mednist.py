"""MedNIST: unpacking the subset .npz, loading with fixed labels and split, the real 12,000-image subset."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtransfer.data.folder import FolderDataset
from medtransfer.data.mednist import MEDNIST_CARD, MEDNIST_LABELS, MEDNIST_URL, unpack_subset
from medtransfer.data.sources import load
from medtransfer.errors import DataError

CLASSES = ("CXR", "AbdomenCT", "Hand")  # not in MEDNIST_LABELS order: labels must be remapped to the card's
SPLIT_OF = ("train", "train", "val", "test")


def _jpeg(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _write_subset(path: Path, rng: np.random.Generator, **override: np.ndarray) -> dict[str, np.ndarray]:
    """A small file in the layout of mednist_subset.npz: 3 classes x 4 images, split train/train/val/test."""
    blobs = [_jpeg(rng) for _ in range(len(CLASSES) * len(SPLIT_OF))]
    labels = np.repeat(np.arange(len(CLASSES)), len(SPLIT_OF)).astype(np.uint8)
    data: dict[str, np.ndarray] = {
        "jpeg_bytes": np.frombuffer(b"".join(blobs), dtype=np.uint8),
        "offsets": np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64),
        "labels": labels,
        "class_names": np.array(CLASSES),
        "split": np.array(SPLIT_OF * len(CLASSES)),
        "source_path": np.array([f"resized/{CLASSES[y]}/{k:06d}.jpeg" for k, y in enumerate(labels)]),
        "git_blob_sha1": np.array(["0" * 40] * len(blobs)),
    }
    data.update(override)
    np.savez(path, **data)  # type: ignore[arg-type]  # numpy's stub types **kwds loosely
    return data


def test_unpack_writes_original_bytes_and_split_csv(tmp_path: Path, rng: np.random.Generator) -> None:
    data = _write_subset(tmp_path / "subset.npz", rng)
    folder = unpack_subset(tmp_path / "subset.npz", tmp_path / "root")
    assert folder == tmp_path / "root" / "MedNIST"
    jpegs = sorted(folder.rglob("*.jpeg"))
    assert len(jpegs) == 12
    o, b = data["offsets"], data["jpeg_bytes"]
    for i, source in enumerate(data["source_path"]):
        written = folder / Path(str(source)).relative_to("resized")
        assert written.read_bytes() == b[o[i]:o[i + 1]].tobytes()
    with open(folder / "split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0] == {"path": "CXR/000000.jpeg", "label": "CXR", "split": "train"}
    assert [r["split"] for r in rows] == list(data["split"])


def test_load_uses_fixed_labels_and_the_split_csv(tmp_path: Path, rng: np.random.Generator) -> None:
    _write_subset(tmp_path / "subset.npz", rng)
    unpack_subset(tmp_path / "subset.npz", tmp_path / "root")
    train = load("mednist", "train", data_root=tmp_path / "root")
    assert isinstance(train, FolderDataset)
    assert train.card is MEDNIST_CARD and train.card.label_names == MEDNIST_LABELS
    # CXR -> 2, AbdomenCT -> 0, Hand -> 4 in MEDNIST_LABELS; two train images per class.
    assert train.labels.tolist() == [2, 2, 0, 0, 4, 4]
    assert [p.name for p in train.paths] == ["000000.jpeg", "000001.jpeg", "000004.jpeg", "000005.jpeg",
                                             "000008.jpeg", "000009.jpeg"]
    assert load("mednist", "test", data_root=tmp_path / "root").labels.tolist() == [2, 0, 4]
    x = np.asarray(train.images(np.arange(6)))
    assert x.shape == (6, 64, 64, 1) and x.dtype == np.uint8


def test_without_split_csv_the_seeded_split_applies(tmp_path: Path, rng: np.random.Generator) -> None:
    _write_subset(tmp_path / "subset.npz", rng)
    (unpack_subset(tmp_path / "subset.npz", tmp_path / "root") / "split.csv").unlink()
    parts = {s: load("mednist", s, data_root=tmp_path / "root", seed=0) for s in ("train", "val", "test")}
    # 4 images per class: val round(0.4) = 0, test round(0.8) = 1, train 3.
    assert [len(ds) for ds in parts.values()] == [9, 0, 3]
    assert sorted(np.bincount(parts["test"].labels, minlength=6).tolist()) == [0, 0, 0, 1, 1, 1]
    again = load("mednist", "test", data_root=tmp_path / "root", seed=0)
    assert isinstance(again, FolderDataset) and isinstance(parts["test"], FolderDataset)
    assert again.paths == parts["test"].paths


def test_missing_folder_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="MedNIST was not found") as e:
        load("mednist", "train", data_root=tmp_path)
    assert MEDNIST_URL in str(e.value) and "unpack_subset" in str(e.value)


def test_unpack_refuses_a_file_in_another_format(tmp_path: Path, rng: np.random.Generator) -> None:
    np.savez(tmp_path / "other.npz", images=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"lacks the key\(s\) \['jpeg_bytes'.*holds \['images'\]"):
        unpack_subset(tmp_path / "other.npz", tmp_path / "root")
    _write_subset(tmp_path / "bad.npz", rng, class_names=np.array(["CXR", "Knee", "Hand"]))
    with pytest.raises(DataError, match=r"unknown names \['Knee'\]"):
        unpack_subset(tmp_path / "bad.npz", tmp_path / "root")


def test_real_subset(shared_data: Path, tmp_path: Path) -> None:
    npz = shared_data / "mednist" / "mednist_subset.npz"
    if not npz.is_file():
        pytest.skip(f"{npz} not found")
    folder = unpack_subset(npz, tmp_path)
    assert sum(1 for _ in folder.rglob("*.jpeg")) == 12000
    assert sorted(p.name for p in folder.iterdir()) == sorted([*MEDNIST_LABELS, "split.csv"])
    sizes = {}
    for split in ("train", "val", "test"):
        ds = load("mednist", split, data_root=tmp_path)
        sizes[split] = len(ds)
        assert np.bincount(ds.labels).tolist() == [len(ds) // 6] * 6
    assert sizes == {"train": 7200, "val": 2400, "test": 2400}
    x = np.asarray(ds.images(np.arange(0, 2400, 300)))
    assert x.shape == (8, 64, 64, 1) and x.dtype == np.uint8 and x.std() > 0
