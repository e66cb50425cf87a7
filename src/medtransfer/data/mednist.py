"""MedNIST, the six-class 64x64 grey dataset of the MONAI tutorials, read as a folder through `folder.py`.

The loader reads ``<data_root>/MedNIST/<class>/*.jpeg`` (the layout of MONAI's ``MedNIST.tar.gz``). When
``MedNIST/split.csv`` (``path,label,split``) exists the split it lists is used, so it is fixed; otherwise
`folder.stratified_split` draws a seeded 70/10/20 split per class. `unpack_subset` writes that layout, and the
``split.csv``, from the 12,000-image subset ``mednist_subset.npz``.

MedNIST has no patient IDs, so any split is per image: neighbouring CT/MRI slices of one patient can land in
different splits. The classes (modality / body part) are close to trivially separable; use it as an easy task.

Examples:
    >>> unpack_subset("shared/data/mednist/mednist_subset.npz", "~/.medmnist")  # doctest: +SKIP
    >>> load("mednist", "test").images(np.arange(2)).shape  # doctest: +SKIP
    (2, 64, 64, 1)
"""

from __future__ import annotations

import csv
import os
from pathlib import Path, PurePosixPath

import numpy as np

from medtransfer.data.base import DATASETS, DatasetCard, DatasetEntry, default_data_root
from medtransfer.data.folder import SPLITS, FolderDataset, folder_dataset
from medtransfer.errors import DataError

MEDNIST_LABELS = ("AbdomenCT", "BreastMRI", "CXR", "ChestCT", "Hand", "HeadCT")
MEDNIST_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/MedNIST.tar.gz"
_FOLDER = "MedNIST"
_SPLIT_CSV = "split.csv"
_SUBSET_KEYS = ("jpeg_bytes", "offsets", "labels", "class_names", "split", "source_path")

MEDNIST_CARD = DatasetCard(
    name="mednist",
    task="multi-class",
    label_names=MEDNIST_LABELS,
    dims=2,
    channels=1,
    image_size=64,
    splits=SPLITS,
    license="CC BY-SA 4.0",
    citation="MedNIST, made available by Dr. Bradley J. Erickson M.D., Ph.D. (Department of Radiology, Mayo "
             "Clinic), distributed with the MONAI tutorials (Project MONAI).",
    source=MEDNIST_URL,
    description="64x64 grey images of six classes (abdomen CT, breast MRI, chest X-ray, chest CT, hand "
                "X-ray, head CT) gathered from TCIA, the RSNA Bone Age Challenge and the NIH Chest X-ray "
                "dataset.",
)


def load_mednist(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
                 seed: int = 0) -> FolderDataset:
    """Load one split of MedNIST from ``<data_root>/MedNIST/``.

    Args:
        card: the MedNIST card (its fixed label names and 1 channel are used).
        split: ``train``, ``val`` or ``test``.
        data_root: folder that holds ``MedNIST/``; see `default_data_root`.
        seed: seed of the per-class 70/10/20 split, used only when ``MedNIST/split.csv`` is absent.

    Raises:
        DataError: ``MedNIST/`` is missing (the message says how to get it), or its content is wrong.
    """
    root = default_data_root(data_root)
    folder = root / _FOLDER
    if not folder.is_dir():
        raise DataError(f"MedNIST was not found in {str(folder)!r}. Download {MEDNIST_URL} and extract it "
                        f"in {str(root)!r} (it unpacks to MedNIST/<class>/*.jpeg), or unpack the "
                        f"12,000-image subset with "
                        f"medtransfer.data.mednist.unpack_subset(<mednist_subset.npz>, {str(root)!r}).")
    source = folder / _SPLIT_CSV if (folder / _SPLIT_CSV).is_file() else folder
    return folder_dataset(source, split, seed=seed, card=card)


def unpack_subset(npz_path: str | os.PathLike[str], data_root: str | os.PathLike[str] | None = None) -> Path:
    """Write the images of ``mednist_subset.npz`` to ``<data_root>/MedNIST/<class>/<file>`` and a split.csv.

    The JPEG bytes are written unchanged, under the file name they had in the source repository.
    ``MedNIST/split.csv`` (``path,label,split``) records the subset's split so that `load_mednist` uses it.

    Args:
        npz_path: the subset file (keys jpeg_bytes, offsets, labels, class_names, split, source_path).
        data_root: folder to create ``MedNIST/`` in; see `default_data_root`.

    Returns:
        The ``MedNIST`` folder.

    Raises:
        DataError: the file lacks a key, or its arrays disagree (lengths, class names, split names).
    """
    data = _read_subset(Path(npz_path).expanduser())
    folder = default_data_root(data_root) / _FOLDER
    jpeg, offsets = data["jpeg_bytes"], data["offsets"]
    rows: dict[str, tuple[str, str]] = {}
    for i, (label, split, source) in enumerate(zip(data["labels"], data["split"], data["source_path"],
                                                   strict=True)):
        name = str(data["class_names"][label])
        rel = f"{name}/{PurePosixPath(str(source)).name}"
        if rel in rows:
            raise DataError(f"{str(npz_path)!r}: two images would be written to {rel!r} (image {i}). Each "
                            f"class must hold distinct file names in source_path.")
        rows[rel] = (name, str(split))
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(jpeg[offsets[i]:offsets[i + 1]].tobytes())
    _write_split_csv(folder / _SPLIT_CSV, rows)
    return folder


def _read_subset(path: Path) -> dict[str, np.ndarray]:
    """The subset's arrays, checked against each other."""
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in _SUBSET_KEYS if k not in npz.files]
        if missing:
            raise DataError(f"{str(path)!r} lacks the key(s) {missing}; it holds {sorted(npz.files)}. Pass "
                            f"the mednist_subset.npz file (see its README).")
        data = {k: npz[k] for k in _SUBSET_KEYS}
    n = len(data["labels"])
    lengths = {k: len(data[k]) for k in ("split", "source_path")} | {"offsets - 1": len(data["offsets"]) - 1}
    if any(v != n for v in lengths.values()) or int(data["offsets"][-1]) != len(data["jpeg_bytes"]):
        raise DataError(f"{str(path)!r}: {n} labels but lengths {lengths} and a last offset of "
                        f"{data['offsets'][-1]} for {len(data['jpeg_bytes'])} bytes. The file is corrupt.")
    unknown = sorted(set(map(str, data["class_names"])) - set(MEDNIST_LABELS))
    top = int(data["labels"].max()) if n else -1
    if unknown or top >= len(data["class_names"]):
        raise DataError(f"{str(path)!r}: class names must be among {list(MEDNIST_LABELS)} and labels must "
                        f"index them. Got unknown names {unknown} and labels up to {top}.")
    bad_splits = sorted(set(map(str, data["split"])) - set(SPLITS))
    if bad_splits:
        raise DataError(f"{str(path)!r}: split values must be among {list(SPLITS)}. Got {bad_splits}.")
    return data


def _write_split_csv(path: Path, rows: dict[str, tuple[str, str]]) -> None:
    """Write path,label,split rows, atomically: a half-written CSV would fix a wrong split."""
    part = path.with_name(path.name + ".part")
    with open(part, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        writer.writerows([rel, label, split] for rel, (label, split) in rows.items())
    os.replace(part, path)


DATASETS.add(MEDNIST_CARD.name, DatasetEntry(MEDNIST_CARD, load_mednist))
