"""Every MedMNIST v2 / MedMNIST+ subset: one registry entry per subset and size, read from the official files.

Names are ``<flag>`` for the 28-pixel files and ``<flag>-<size>`` for the others (``breastmnist-64``,
``organmnist3d-64``). Cards are built from ``medmnist.info.INFO`` (URL, MD5, labels, licence, sample counts),
so the pinned checksums are the ones the ``medmnist`` package ships.

Examples:
    >>> from medtransfer.data import load
    >>> ds = load("breastmnist", "test", data_root="~/.medmnist")  # doctest: +SKIP
    >>> ds.images(np.arange(4)).shape  # doctest: +SKIP
    (4, 28, 28, 1)
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from medtransfer import _download
from medtransfer.data.base import DATASETS, ArrayDataset, DatasetCard, DatasetEntry, default_data_root
from medtransfer.errors import ConfigError, DataError, DownloadError


def _medmnist_info() -> dict[str, dict[str, Any]]:
    """``medmnist.info.INFO``, read without importing the ``medmnist`` package: its ``__init__`` imports torch,
    pandas and scikit-learn (3-5 s here), which `medtransfer datasets list` must not wait for."""
    if "medmnist.info" in sys.modules:
        return sys.modules["medmnist.info"].INFO  # type: ignore[no-any-return]
    package = importlib.util.find_spec("medmnist")  # locates the package without running its __init__
    if package is None or package.origin is None:
        raise ImportError("medtransfer needs the 'medmnist' package (pip install medmnist) for MedMNIST's INFO.")
    spec = importlib.util.spec_from_file_location("medtransfer._medmnist_info", Path(package.origin).parent / "info.py")
    assert spec is not None and spec.loader is not None, "medmnist/info.py sits beside medmnist/__init__.py"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.INFO  # type: ignore[no-any-return]


INFO = _medmnist_info()

log = logging.getLogger(__name__)

_TASKS = {
    "binary-class": "binary",
    "multi-class": "multi-class",
    "multi-label, binary-class": "multi-label",
    "ordinal-regression": "ordinal",
}
_CITATION = (
    "Jiancheng Yang, Rui Shi, Donglai Wei, Zequan Liu, Lin Zhao, Bilian Ke, Hanspeter Pfister, Bingbing Ni. "
    "MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical image classification. "
    "Scientific Data 10, 41 (2023)."
)
_CITATION_PLUS = (
    " Larger sizes (MedMNIST+): Sebastian Doerrich, Francesco Di Salvo, Julius Brockmann, Christian Ledig. "
    "Rethinking model prototyping through the MedMNIST+ dataset collection. arXiv:2404.15786 (2024)."
)
_OFFLINE_ENV = "MEDTRANSFER_OFFLINE"
_SIDECAR_SUFFIX = ".md5-verified"


def subset_sizes(flag: str) -> tuple[int, ...]:
    """Image sizes published for the MedMNIST subset `flag`: 28 plus every size INFO has an MD5 for."""
    extra = sorted(int(k.split("_", 1)[1]) for k in INFO[flag] if k.startswith("MD5_"))
    return (28, *extra)


def dataset_name(flag: str, size: int) -> str:
    """Registry name of a subset at a size: ``breastmnist`` for 28 px, ``breastmnist-64`` otherwise."""
    return flag if size == 28 else f"{flag}-{size}"


def _describe(description: str, size: int) -> str:
    """INFO's description, which always speaks of the 28 px files, with its 28×28(×28) turned into `size`."""
    if size == 28:
        return description
    out = description.replace("28×28×28", f"{size}×{size}×{size}").replace("28×28", f"{size}×{size}")
    return out + f" (MedMNIST+: this file holds the images at {size} px.)"


def medmnist_card(flag: str, size: int = 28) -> DatasetCard:
    """Build the card of MedMNIST subset `flag` at `size` from ``medmnist.info.INFO``."""
    if flag not in INFO:
        raise ConfigError(f"The 'flag' parameter of medmnist_card must be one of {sorted(INFO)}. "
                          f"Got {flag!r} instead.")
    if size not in subset_sizes(flag):
        raise ConfigError(f"The 'size' parameter of medmnist_card must be one of {list(subset_sizes(flag))} "
                          f"for {flag!r}. Got {size!r} instead.")
    info = INFO[flag]
    suffix = "" if size == 28 else f"_{size}"
    file = f"{flag}{suffix}.npz"
    task = _TASKS[info["task"]]
    metrics = ("accuracy", "auc", "qw_kappa") if task == "ordinal" else ("accuracy", "auc")
    return DatasetCard(
        name=dataset_name(flag, size),
        task=task,  # type: ignore[arg-type]  # values of _TASKS are all TaskType literals
        label_names=tuple(info["label"][k] for k in sorted(info["label"], key=int)),
        dims=3 if flag.endswith("3d") else 2,
        channels=int(info["n_channels"]),
        image_size=size,
        splits=("train", "val", "test"),
        metrics=metrics,
        default_metric="auc",
        license=info["license"],
        citation=_CITATION + ("" if size == 28 else _CITATION_PLUS),
        source=info[f"url{suffix}"],
        description=_describe(info["description"], size),
        extra={"flag": flag, "size": size, "file": file, "url": info[f"url{suffix}"],
               "md5": info[f"MD5{suffix}"], "n_samples": dict(info["n_samples"])},
    )


def load_medmnist(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
                  download: bool = True, progress: bool = True) -> ArrayDataset:
    """Load one split of a MedMNIST subset, downloading and checking the official file when needed.

    Only the requested split is decompressed. Images come back uint8, channels last: (N, H, W, C) in 2D,
    (N, D, H, W, 1) in 3D. Labels are (N,) int64, or (N, C) uint8 for the multi-label ChestMNIST.

    Args:
        card: a card from `medmnist_card` (its ``extra`` holds file, url, md5 and n_samples).
        split: ``train``, ``val`` or ``test``.
        data_root: folder holding the ``.npz`` files; see `default_data_root`.
        download: fetch a missing file. With False, or $MEDTRANSFER_OFFLINE=1, a missing file is an error.
        progress: show a progress bar while downloading.

    Raises:
        DownloadError: the file is missing and cannot be downloaded; the message says where to put it.
        ChecksumError: the file's MD5 is not the official one; the message holds both MD5s.
        DataError: the split's size or array shapes differ from the card.
    """
    path = ensure_file(card, default_data_root(data_root), download=download, progress=progress)
    with np.load(path) as npz:  # an NpzFile decompresses only the members that are read
        keys = (f"{split}_images", f"{split}_labels")
        missing = [k for k in keys if k not in npz.files]
        if missing:
            raise DataError(f"{str(path)!r} has no {missing} array(s); it holds {sorted(npz.files)}. "
                            f"Delete the file and download it again.")
        raw_images, raw_labels = npz[keys[0]], npz[keys[1]]
    expected = card.extra["n_samples"][split]
    if len(raw_images) != expected:
        raise DataError(f"{card.extra['file']!r} split {split!r} holds {len(raw_images)} images, but "
                        f"MedMNIST INFO lists {expected}: the file is not the official one. Delete it and "
                        f"download it again.")
    images = _channels_last(raw_images, card)
    labels = _labels(raw_labels, card)
    fingerprint = f"medmnist:{card.extra['file']}:{card.extra['md5']}:{split}"
    return ArrayDataset(card, split, images, labels, fingerprint=fingerprint)


def ensure_file(card: DatasetCard, folder: Path, *, download: bool = True, progress: bool = True) -> Path:
    """Return the path of `card`'s ``.npz`` in `folder`, downloading it when missing and checking its MD5."""
    file, url, md5 = card.extra["file"], card.extra["url"], card.extra["md5"]
    path = folder / file
    if path.is_file():
        verify_cached(path, md5)
        return path
    if not download or _offline():
        why = "download=False" if not download else f"${_OFFLINE_ENV}=1"
        raise DownloadError(_missing_message(card, folder, f"{file!r} is not in {str(folder)!r} and {why}"))
    try:
        _download.download(url, path, expected=md5, algo="md5", progress=progress)
    except DownloadError as e:  # the cause alone: _missing_message names the URL, MD5 and folder once
        raise DownloadError(_missing_message(card, folder, f"downloading {file!r} failed ({e.__cause__ or e})")) from e
    _write_sidecar(path, md5)
    return path


def _offline() -> bool:
    return os.environ.get(_OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def _missing_message(card: DatasetCard, folder: Path, why: str) -> str:
    return (f"Dataset {card.name!r}: {why}. Download {card.extra['url']} (md5 {card.extra['md5']}) and save "
            f"it as {card.extra['file']!r} in the folder {str(folder)!r}; or pass data_root= (or set "
            f"$MEDTRANSFER_DATA) to the folder that already holds it.")


def verify_cached(path: Path, md5: str) -> None:
    """Check `path`'s MD5 against `md5`; skip hashing when a sidecar records a match for this size and mtime.

    The sidecar ``<file>.md5-verified`` holds (md5, size, mtime_ns) of the last successful check: hashing a
    multi-GB 224-pixel file on every load would take longer than reading the split it is asked for.

    Raises:
        ChecksumError: the MD5 differs; the message holds both digests.
    """
    stat = path.stat()
    if _read_sidecar(path) == {"md5": md5.lower(), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}:
        return
    _download.verify(path, md5, "md5", fix=f"Delete {str(path)!r} and load again to download the official "
                                           f"file.")
    _write_sidecar(path, md5)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + _SIDECAR_SUFFIX)


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):  # missing or unreadable sidecar: hash the file again
        return None
    return data if isinstance(data, dict) else None


def _write_sidecar(path: Path, md5: str) -> None:
    stat = path.stat()
    record = {"md5": md5.lower(), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        _sidecar(path).write_text(json.dumps(record))
    except OSError as e:  # a read-only data folder still loads; it is just hashed every time
        log.debug("could not write %s (%s); the MD5 will be checked again next time", _sidecar(path), e)


def _channels_last(images: np.ndarray, card: DatasetCard) -> np.ndarray:
    """(N, H, W) grey or (N, H, W, 3) RGB -> (N, H, W, C); (N, D, H, W) -> (N, D, H, W, 1)."""
    stored_ndim = 1 + card.dims + (1 if card.channels == 3 else 0)
    if images.ndim != stored_ndim or images.dtype != np.uint8:
        raise DataError(f"{card.extra['file']!r}: expected uint8 images with {stored_ndim} dimensions for a "
                        f"{card.dims}D, {card.channels}-channel subset. Got {images.dtype} {images.shape}. "
                        f"Delete the file and download it again.")
    return images if card.channels == 3 else images[..., None]


def _labels(raw: np.ndarray, card: DatasetCard) -> np.ndarray:
    """(N, 1) -> (N,) int64 for single-label tasks; (N, C) uint8 kept for multi-label ones."""
    if card.task == "multi-label":
        if raw.ndim != 2 or raw.shape[1] != card.num_classes:
            raise DataError(f"{card.extra['file']!r}: expected labels of shape (N, {card.num_classes}). "
                            f"Got {raw.shape}.")
        return raw.astype(np.uint8, copy=False)
    if raw.ndim not in (1, 2) or (raw.ndim == 2 and raw.shape[1] != 1):
        raise DataError(f"{card.extra['file']!r}: expected labels of shape (N, 1). Got {raw.shape}.")
    labels = raw.reshape(-1).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= card.num_classes):
        raise DataError(f"{card.extra['file']!r}: labels must lie in [0, {card.num_classes - 1}]. "
                        f"Got the range [{labels.min()}, {labels.max()}].")
    return labels


def _register_all() -> None:
    for flag in INFO:
        for size in subset_sizes(flag):
            card = medmnist_card(flag, size)
            DATASETS.add(card.name, DatasetEntry(card, load_medmnist))


_register_all()
