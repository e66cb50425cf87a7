"""User data from a folder of images or a CSV: the card is read off the data, images are decoded on demand.

Three layouts are accepted:

* ``root/<class>/<files>``: no declared split; a seeded, stratified 70/10/20 train/val/test split is drawn
  (see `stratified_split`).
* ``root/<split>/<class>/<files>`` with split folders among ``train``, ``val`` and ``test``.
* a CSV file with a header ``path,label[,split]``; paths are relative to the CSV's folder, or absolute.

Hidden files and folders (a leading ``.``) are skipped, and so is any file whose extension is not an image
extension (PNG, JPEG, BMP, TIFF; DICOM ``.dcm`` with the optional ``medtransfer[dicom]`` extra).

Examples:
    >>> ds = folder_dataset("~/data/xrays", "test")  # doctest: +SKIP
    >>> ds.card.label_names, ds.images(np.arange(2)).shape  # doctest: +SKIP
    (('normal', 'pneumonia'), (2, 224, 224, 1))
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medtransfer.data.base import DatasetCard, ImageDataset
from medtransfer.errors import ConfigError, DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm"})
SPLITS = ("train", "val", "test")
# Share of each class put in train / val / test when the data declares no split (MedMNIST's 7:1:2).
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
_HIGH_DEPTH_MODES = ("I", "F")  # PIL modes I, I;16*, F: more than 8 bits per pixel
_COLOUR_MODES = ("RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")


@dataclass(frozen=True)
class _Item:
    path: Path  # absolute
    label: str
    split: str | None  # None when the data declares no split
    where: str  # where the item was declared, for messages: "folder '...'" or "row 3 of '...'"


@dataclass(frozen=True)
class _Source:
    path: Path  # the folder or CSV given, resolved
    root: Path  # the folder item paths are relative to
    layout: str  # "class-folders", "split-folders" or "csv"
    items: tuple[_Item, ...]

    @property
    def splits(self) -> tuple[str, ...]:
        declared = {item.split for item in self.items}
        return SPLITS if None in declared else tuple(s for s in SPLITS if s in declared)


class FolderDataset(ImageDataset):
    """One split of a folder or CSV source: paths and labels in memory, images decoded with PIL on demand.

    Every image is converted to the card's channels (PIL ``L`` or ``RGB``). Images with more than 8 bits per
    pixel (16-bit PNG/TIFF, 32-bit integer or float, most DICOM) are scaled to uint8 by their own min and max,
    so intensities are comparable within an image, not across images.
    """

    def __init__(self, card: DatasetCard, split: str, paths: Sequence[Path], labels: np.ndarray, *,
                 root: Path) -> None:
        super().__init__(card, split, labels)
        self.paths = tuple(paths)
        self.root = root
        self._fingerprint: str | None = None

    def images(self, index: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """Decode the images at `index`: (B, H, W, C) uint8 when sizes agree, else a list of (H, W, C)."""
        arrays = [read_image(self.paths[i], self.card.channels) for i in np.asarray(index).reshape(-1)]
        if not arrays:
            side = self.card.image_size or 0
            return np.zeros((0, side, side, self.card.channels), np.uint8)
        if all(a.shape == arrays[0].shape for a in arrays):
            return np.stack(arrays)  # (B, H, W, C)
        return arrays

    @property
    def fingerprint(self) -> str:
        """sha256 over the split's sorted relative paths, file sizes, mtimes, labels, split and channels."""
        if self._fingerprint is None:
            h = hashlib.sha256(f"folder:{self.split}:{self.card.channels}\n".encode())
            rows = zip(map(self._relative, self.paths), self.paths, self.labels.tolist(), strict=True)
            for rel, path, label in sorted(rows):
                stat = path.stat()
                h.update(f"{rel}\t{stat.st_size}\t{stat.st_mtime_ns}\t{label}\n".encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else path.as_posix()


def folder_card(path: str | os.PathLike[str], *, label_names: Sequence[str] | None = None,
                name: str | None = None, channels: int | None = None) -> DatasetCard:
    """Build the card of a folder or CSV source from its data.

    Args:
        path: a folder ``root/<class>/`` or ``root/<split>/<class>/``, or a CSV ``path,label[,split]``.
        label_names: class names in label-index order; default: the sorted class folder names or CSV labels.
        name: card name; default ``folder:<resolved path>``.
        channels: 1 or 3; default: 1 when the first image is grey, else 3.

    Returns:
        A card with task ``binary`` for two classes, else ``multi-class``; ``image_size`` None; ``splits`` the
        declared ones, or ``("train", "val", "test")`` when the data declares none.
    """
    source = _scan(Path(path).expanduser())
    names, _ = _label_ids(source, label_names)
    return _make_card(source, names, name=name, channels=channels)


def folder_dataset(path: str | os.PathLike[str], split: str, *, label_names: Sequence[str] | None = None,
                   name: str | None = None, channels: int | None = None, seed: int = 0,
                   card: DatasetCard | None = None) -> FolderDataset:
    """Load one split of a folder or CSV source (layouts in the module docstring).

    When the data declares no split, each class is shuffled with ``numpy.random.default_rng(seed)`` and cut
    70/10/20 into train/val/test (`stratified_split`); the same seed gives the same split on every call.

    Args:
        path: see `folder_card`.
        split: ``train``, ``val`` or ``test``; it must be one the data has.
        label_names, name, channels: see `folder_card`.
        seed: seed of the split drawn when the data declares none.
        card: a registered card to use instead of one built from the data (its label names and channels
            apply); used by sources such as MedNIST that are folders with a fixed card.

    Raises:
        DataError: the layout, a label, a CSV row or the requested split is wrong; the message says which.
    """
    source = _scan(Path(path).expanduser())
    if card is not None:
        label_names, channels = card.label_names, card.channels
    names, ids = _label_ids(source, label_names)
    card = card or _make_card(source, names, name=name, channels=channels)
    if split not in source.splits:
        raise DataError(f"{str(source.path)!r} has no split {split!r}; its splits are {list(source.splits)}.")
    if any(item.split is None for item in source.items):  # the layouts declare a split for all items or none
        splits = stratified_split(ids, seed=seed)
    else:
        splits = np.array([item.split for item in source.items], dtype=object)
    keep = np.flatnonzero(splits == split)
    paths = [source.items[i].path for i in keep]
    return FolderDataset(card, split, paths, ids[keep], root=source.root)


def stratified_split(labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Split names ("train"/"val"/"test") for `labels`, 70/10/20 within each class.

    Classes are taken in sorted order; one ``default_rng(seed)`` permutes each class in turn. A class of n
    items gives ``round(0.1 n)`` to val, ``round(0.2 n)`` to test and the rest to train.
    """
    rng = np.random.default_rng(seed)
    out = np.full(len(labels), "train", dtype=object)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        n_val = round(SPLIT_FRACTIONS["val"] * len(members))
        n_test = round(SPLIT_FRACTIONS["test"] * len(members))
        n_train = len(members) - n_val - n_test
        out[members[n_train:n_train + n_val]] = "val"
        out[members[n_train + n_val:]] = "test"
    return out


def read_image(path: Path, channels: int) -> np.ndarray:
    """Decode one image file to uint8 (H, W, channels); > 8 bits per pixel is min-max scaled per image.

    Raises:
        DataError: the file cannot be decoded (corrupt, truncated, not an image), naming it.
    """
    return _to_channels(_decode(path), channels)


def _decode(path: Path) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8."""
    try:
        return _read_dicom(path) if path.suffix.lower() == ".dcm" else _read_pil(path)
    except DataError:  # pydicom missing: a DataError (a ValueError) that must not read as a corrupt file
        raise
    # PIL signals some broken files with SyntaxError (e.g. "broken PNG file"), not only OSError/ValueError.
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"Cannot decode image {str(path)!r} ({e}): the file is corrupt, truncated or not an "
                        f"image. Replace or remove it.") from e


def _read_pil(path: Path) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8, via PIL."""
    with Image.open(path) as img:
        img.load()  # decode now, so a truncated file fails here
        if img.mode.startswith(_HIGH_DEPTH_MODES):
            return _minmax_uint8(np.asarray(img))
        return np.asarray(img.convert("RGB" if img.mode in _COLOUR_MODES else "L"))


def _read_dicom(path: Path) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8, via pydicom (optional extra)."""
    try:
        import pydicom
    except ImportError as e:
        raise DataError(f"Reading the DICOM file {str(path)!r} needs pydicom, which is not installed: "
                        f"pip install 'medtransfer[dicom]'.") from e
    try:
        array = np.asarray(pydicom.dcmread(path).pixel_array)
    except (pydicom.errors.InvalidDicomError, AttributeError, RuntimeError) as e:  # no pixels / no decoder
        raise ValueError(str(e)) from e
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
        raise ValueError(f"pixel array of shape {array.shape}; only single-frame grey or RGB images are read")
    return array if array.dtype == np.uint8 else _minmax_uint8(array)


def _minmax_uint8(array: np.ndarray) -> np.ndarray:
    """Scale one image's range [min, max] to [0, 255]; a constant image becomes 0."""
    array = array.astype(np.float64)
    low, high = float(array.min()), float(array.max())
    scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
    return np.round(scaled).astype(np.uint8)


def _to_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 -> (H, W, channels)."""
    if array.ndim == 2:
        return np.repeat(array[..., None], channels, axis=-1)
    if channels == 3:
        return array
    return np.asarray(Image.fromarray(array, "RGB").convert("L"))[..., None]


def detect_channels(path: Path) -> int:
    """1 when the image at `path` is grey, else 3 (reads the header only)."""
    if path.suffix.lower() == ".dcm":
        return 3 if _decode(path).ndim == 3 else 1
    try:
        with Image.open(path) as img:
            return 3 if img.mode in _COLOUR_MODES else 1
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"Cannot decode image {str(path)!r} ({e}): the file is corrupt or not an image. "
                        f"Replace or remove it.") from e


def _make_card(source: _Source, names: tuple[str, ...], *, name: str | None,
               channels: int | None) -> DatasetCard:
    if len(names) < 2:
        raise DataError(f"{str(source.path)!r} holds a single class {list(names)}; a classification dataset "
                        f"needs at least two. Add a folder (or CSV label) per class, or pass label_names.")
    if channels is not None and channels not in (1, 3):
        raise ConfigError(f"The 'channels' parameter of folder_dataset must be 1, 3 or None. "
                          f"Got {channels!r} instead.")
    return DatasetCard(
        name=name or f"folder:{source.path}",
        task="binary" if len(names) == 2 else "multi-class",
        label_names=names,
        channels=channels or detect_channels(source.items[0].path),
        image_size=None,
        splits=source.splits,
        source=str(source.path),
        description=f"User images from {str(source.path)!r} ({source.layout}, {len(source.items)} images).",
        extra={"layout": source.layout, "n_images": len(source.items)},
    )


def _label_ids(source: _Source, label_names: Sequence[str] | None) -> tuple[tuple[str, ...], np.ndarray]:
    """The label names (given, or sorted from the data) and each item's label index, (N,) int64."""
    names = tuple(label_names) if label_names is not None else tuple(sorted({i.label for i in source.items}))
    lookup = {label: k for k, label in enumerate(names)}
    for item in source.items:
        if item.label not in lookup:
            raise DataError(f"Label {item.label!r} of {item.where} is not among the label names "
                            f"{list(names)}. Fix the label, or pass label_names that include it.")
    return names, np.array([lookup[i.label] for i in source.items], dtype=np.int64)


def _scan(path: Path) -> _Source:
    if path.is_dir():
        return _scan_folder(path.resolve())
    if path.is_file() and path.suffix.lower() == ".csv":
        return _scan_csv(path.resolve())
    what = "does not exist" if not path.exists() else "is neither a folder nor a .csv file"
    raise DataError(f"The path {str(path)!r} {what}. Pass a folder of class folders (root/<class>/<images> "
                    f"or root/<split>/<class>/<images>) or a CSV file with columns path,label[,split].")


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_folder(root: Path) -> _Source:
    subdirs = _visible_dirs(root)
    split_dirs = [d for d in subdirs if d.name in SPLITS]
    if split_dirs and len(split_dirs) != len(subdirs):
        others = [d.name for d in subdirs if d.name not in SPLITS]
        raise DataError(f"{str(root)!r} mixes split folders {[d.name for d in split_dirs]} with other "
                        f"folders {others}. Put every class folder inside a split folder "
                        f"(root/<split>/<class>/), or rename the folders so none is called {list(SPLITS)}.")
    if split_dirs:
        items = [item for d in split_dirs for item in _class_items(d, split=d.name)]
        return _Source(root, root, "split-folders", tuple(items))
    return _Source(root, root, "class-folders", tuple(_class_items(root, split=None)))


def _class_items(folder: Path, *, split: str | None) -> list[_Item]:
    class_dirs = _visible_dirs(folder)
    if not class_dirs:
        raise DataError(f"{str(folder)!r} has no class folders. Expected <folder>/<class>/<images>, one "
                        f"folder per class.")
    items = []
    for class_dir in class_dirs:
        files = _image_files(class_dir)
        if not files:
            raise DataError(f"The class folder {str(class_dir)!r} holds no image files (extensions "
                            f"{sorted(IMAGE_EXTENSIONS)}). Add its images or remove the folder.")
        items += [_Item(f, class_dir.name, split, f"folder {str(class_dir)!r}") for f in files]
    return items


def _image_files(folder: Path) -> list[Path]:
    """Image files under `folder` (recursive), sorted, skipping hidden files and folders."""
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _scan_csv(csv_path: Path) -> _Source:
    with open(csv_path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: spreadsheets write a BOM
        reader = csv.DictReader(f, skipinitialspace=True)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "path" not in columns or "label" not in columns:
            raise DataError(f"The CSV {str(csv_path)!r} needs a header with the columns 'path' and 'label' "
                            f"(and optionally 'split'). Its columns are {columns}.")
        reader.fieldnames = columns
        items = [_csv_item(row, n, csv_path, "split" in columns) for n, row in enumerate(reader, start=1)]
    if not items:
        raise DataError(f"The CSV {str(csv_path)!r} has a header but no rows. Add one row per image.")
    return _Source(csv_path, csv_path.parent, "csv", tuple(items))


def _csv_item(row: dict[str, str | None], n: int, csv_path: Path, has_split: bool) -> _Item:
    where = f"row {n} of {str(csv_path)!r}"
    value, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
    path = Path(value).expanduser()
    path = path if path.is_absolute() else csv_path.parent / path
    if not value or not path.is_file():
        raise DataError(f"The image {value!r} in {where} does not exist (looked for {str(path)!r}). Paths "
                        f"are relative to the CSV's folder, or absolute.")
    if not label:
        raise DataError(f"{where} has an empty label. Give every row a label.")
    split = (row.get("split") or "").strip() if has_split else None
    if has_split and split not in SPLITS:
        raise DataError(f"The split {split!r} in {where} must be one of {list(SPLITS)}.")
    return _Item(path, label, split, where)
