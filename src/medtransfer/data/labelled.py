"""What the reference datasets (CheXpert, ChestX-ray14, Shenzhen, EyePACS, BACH, iChallenge ...) share: a split of
image files with labels from the dataset's own CSV, patient-level splits, and layout checks whose errors name the
file or column that is missing, what was found, the expected layout and where to download it.

Each dataset module finds its folder as the official download unpacks, reads its CSV with `read_table`, applies
its label rule, splits with `group_split` (never a patient in two splits) and returns `LabelledFiles`.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medtransfer.data.base import DatasetCard, ImageDataset, files_fingerprint
from medtransfer.data.folder import read_image
from medtransfer.data.segmentation import stack_or_list
from medtransfer.errors import ConfigError, DataError

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Layout:
    """How a download looks, for messages: its name, the files it must hold, where to get it, its licence."""

    dataset: str
    expected: str  # the tree, e.g. "CheXpert-v1.0-small/{train.csv, valid.csv, train/, valid/}"
    url: str
    licence_note: str = ""  # e.g. "a registration and a licence click-through"

    def missing(self, root: Path, what: str) -> DataError:
        """The error for a folder that is not this dataset's download."""
        found = sorted(p.name for p in root.iterdir())[:12] if root.is_dir() else []
        seen = f"it holds {found}" if root.is_dir() else "it does not exist"
        get = f" Download it from {self.url}" + (f" ({self.licence_note})" if self.licence_note else "")
        return DataError(f"{self.dataset}: {what} not found under {str(root)!r} ({seen}). Expected the layout of the "
                         f"official download: {self.expected}.{get}, unpack it and pass --data-root to the folder "
                         "that holds it.")


def find_root(base: Path, candidates: Sequence[str], marker: str, layout: Layout) -> Path:
    """The first of ``base / c`` (c in `candidates`, "" for base itself) that holds `marker`, else an error."""
    for c in candidates:
        root = base / c if c else base
        if (root / marker).exists():
            return root
    raise layout.missing(base, repr(marker))


def read_table(path: Path, columns: Sequence[str], layout: Layout, *, header: bool = True,
               names: Sequence[str] | None = None) -> list[dict[str, str]]:
    """The rows of a CSV as dicts, with every column of `columns` present (whitespace stripped).

    `header=False` reads a CSV without a header row (BACH's ground truth) with the column `names` given.

    Raises:
        DataError: the file is missing, a column is missing (naming those found), or it has no rows.
    """
    if not path.is_file():
        raise layout.missing(path.parent, f"the file {path.name!r}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, fieldnames=None if header else list(names or columns), skipinitialspace=True)
        found = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = found
        absent = [c for c in columns if c not in found]
        if absent:
            raise DataError(f"{layout.dataset}: the CSV {str(path)!r} lacks the column(s) {absent}; its columns are "
                            f"{found}. Use the file as the official download ships it ({layout.url}).")
        rows = [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    if not rows:
        raise DataError(f"{layout.dataset}: the CSV {str(path)!r} has no rows.")
    return rows


def check_files(paths: Iterable[Path], layout: Layout, *, what: str = "images", listed_in: str = "its CSV") -> None:
    """Raise DataError naming the first missing files (and their count) when any of `paths` is absent."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{layout.dataset}: {len(missing)} {what} listed in {listed_in} are missing, e.g. "
                        f"{[str(p) for p in missing[:3]]}. Unpack the complete download ({layout.url}); a partial "
                        "copy would silently change the split and the numbers.")


def group_split(groups: Sequence[str], fractions: Mapping[str, float], *, seed: int = 0,
                labels: np.ndarray | None = None) -> np.ndarray:
    """Split names per row such that all rows of a group (a patient) land in one split.

    Groups are ordered by name and shuffled with ``default_rng(seed)``; with `labels` given (one per row; a
    multi-label row counts as one stratum), each class's groups are shuffled apart and then interleaved by their
    position within their class, so that every stretch of the order holds each class in its share. The order is
    cut once at the cumulative `fractions` of the number of groups (train, val, test): the split sizes are exact
    and every split gets about its share of every class.

    Examples:
        >>> group_split(["p1", "p1", "p2", "p3"], {"train": 2 / 3, "test": 1 / 3}, seed=0).tolist()
        ['train', 'train', 'test', 'train']
    """
    names = [s for s in SPLIT_NAMES if fractions.get(s, 0) > 0]
    unique = sorted(set(groups))
    rng = np.random.default_rng(seed)
    first: dict[str, int] = {}
    if labels is not None:
        for g, y in zip(groups, np.asarray(labels).tolist(), strict=True):
            first.setdefault(g, int(y) if np.ndim(y) == 0 else 0)
    keyed = []  # (position within its class in [0, 1), class, group)
    for stratum, y in enumerate(sorted(set(first.values())) if labels is not None else [None]):
        members = [g for g in unique if labels is None or first[g] == y]
        for rank, i in enumerate(rng.permutation(len(members))):
            keyed.append(((rank + 0.5) / len(members), stratum, members[i]))
    order = [g for _, _, g in sorted(keyed)]
    total = sum(fractions[s] for s in names)
    assign: dict[str, str] = {}
    start, cumulative = 0, 0.0
    for k, name in enumerate(names):
        cumulative += fractions[name] / total
        stop = len(order) if k == len(names) - 1 else int(round(cumulative * len(order)))
        for g in order[start:stop]:
            assign[g] = name
        start = stop
    return np.array([assign[g] for g in groups], dtype=object)


def shuffled_split(n: int, *, train: float = 0.8, random_state: int = 42) -> np.ndarray:
    """Anton et al.'s rule: rows shuffled by ``numpy.random.RandomState(random_state)`` (what pandas' ``sample``
    and scikit-learn's ``shuffle`` do with ``random_state=42``), the first floor(train · N) are train, the rest
    test. Row-level: two images of one patient can land on both sides, as in the reference."""
    order = np.random.RandomState(random_state).permutation(n)
    out = np.full(n, "test", dtype=object)
    out[order[: int(np.floor(train * n))]] = "train"
    return out


def hu_window(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """CT values in HU shown in the window [low, high] as uint8 0-255 (clipped, then scaled and rounded)."""
    return np.round((np.clip(np.asarray(values, np.float64), low, high) - low) / (high - low) * 255.0).astype(np.uint8)


def optional_module(module: str, extra: str, path: Path) -> Any:
    """Import `module` for reading `path`, or a DataError naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise DataError(f"Reading {str(path)!r} needs {module}, which is not installed: pip install "
                        f"'medtransfer[{extra}]'.") from e


SPLIT_RULES = ("seeded", "anton2022")
SEEDED = {"train": 0.7, "val": 0.1, "test": 0.2}  # MedMNIST's 7:1:2


def rule_split(rule: str, groups: Sequence[str], labels: np.ndarray, *, seed: int, dataset: str) -> np.ndarray:
    """Split names per row for a dataset without an official split.

    ``seeded``: a 70/10/20 split by patient (`group_split`), stratified by label, from `seed`.
    ``anton2022``: Anton et al.'s 80/20 row shuffle (`shuffled_split`); its validation rows are a seeded 20% of
    the train rows (``default_rng(seed)``), as their linear protocol holds out internally.
    """
    if rule == "seeded":
        return group_split(groups, SEEDED, seed=seed, labels=labels)
    if rule == "anton2022":
        out = shuffled_split(len(groups))
        train = np.flatnonzero(out == "train")
        held = np.random.default_rng(seed).permutation(train)[: int(round(0.2 * len(train)))]
        out[held] = "val"
        return out
    raise ConfigError(f"The 'split' option of {dataset} must be one of {list(SPLIT_RULES)}. Got {rule!r} instead.")


def leaking_groups(datasets: Sequence[LabelledFiles]) -> set[str]:
    """The patients (groups) found in more than one of the given splits."""
    seen: dict[str, str] = {}
    leaks = set()
    for ds in datasets:
        for g in ds.groups or ():
            if seen.setdefault(g, ds.split) != ds.split:
                leaks.add(g)
    return leaks


class LabelledFiles(ImageDataset):
    """One split of image files with labels: (N,) int64, or (N, C) uint8 for multi-label; images decoded on
    demand to the card's channels.

    Attributes:
        paths: the image files, in the split's order.
        groups: the patient (or eye pair) of each image, for leakage checks; None when the dataset has none.
    """

    def __init__(self, card: DatasetCard, split: str, paths: Sequence[Path], labels: np.ndarray, *,
                 groups: Sequence[str] | None = None, sources: Sequence[Path] = (), options: str = "",
                 read: Callable[[Path], np.ndarray] | None = None) -> None:
        super().__init__(card, split, labels)
        self._read = read or (lambda p: read_image(p, card.channels))  # a file -> (H, W, C) uint8
        self.paths = tuple(paths)
        self.groups = None if groups is None else tuple(groups)
        self.sources = tuple(sources)  # the label files (they key the fingerprint too)
        self.options = options
        self._fingerprint: str | None = None

    def images(self, index: np.ndarray) -> np.ndarray | list[np.ndarray]:
        arrays = [self._read(self.paths[int(i)]) for i in np.asarray(index).reshape(-1)]
        return stack_or_list(arrays) if arrays else np.zeros((0, 1, 1, self.card.channels), np.uint8)

    @property
    def fingerprint(self) -> str:
        """sha256 of the card, split, options, each file's name, size and mtime, and the labels."""
        if self._fingerprint is None:  # full paths: CheXpert has thousands of view1_frontal.jpg
            header = f"{self.card.name}:{self.split}:{self.options}:{self.card.channels}"
            self._fingerprint = files_fingerprint(header, (*self.sources, *self.paths),
                                                  np.ascontiguousarray(self.labels).tobytes())
        return self._fingerprint


def counts(dataset: ImageDataset) -> dict[str, int]:
    """Images per class of a split (per label's positives for multi-label), by label name."""
    y = np.asarray(dataset.labels)
    names = dataset.card.label_names
    if y.ndim == 2:
        return {name: int(y[:, k].sum()) for k, name in enumerate(names)}
    return {name: int((y == k).sum()) for k, name in enumerate(names)}


def option_key(**options: Any) -> str:
    """A stable text of a loader's options, for the fingerprint."""
    return ",".join(f"{k}={options[k]!r}" for k in sorted(options))


def split_files(card: DatasetCard, split: str, paths: Sequence[Path], labels: np.ndarray, *, rule: str, seed: int,
                layout: Layout, groups: Sequence[str] | None = None, sources: Sequence[Path] = (),
                read: Callable[[Path], np.ndarray] | None = None) -> LabelledFiles:
    """One split of a dataset without an official split: `rule_split` over all its files (each its own
    patient unless `groups` says otherwise), after checking that every file is there."""
    check_files(paths, layout)
    groups = list(groups) if groups is not None else [p.name for p in paths]
    names = rule_split(rule, groups, labels, seed=seed, dataset=card.name)
    take = np.flatnonzero(names == split)
    return LabelledFiles(card, split, [paths[int(i)] for i in take], labels[take], groups=[groups[i] for i in take],
                         sources=sources, options=option_key(split_rule=rule, seed=seed), read=read)


def check_split_options(card: DatasetCard, options: Mapping[str, Any]) -> None:
    """The options of a dataset split by `rule_split`: ``split_rule`` and ``seed``."""
    unknown = [k for k in options if k not in ("split_rule", "seed")]
    if unknown:
        raise ConfigError(f"Dataset {card.name!r} takes the options ['split_rule', 'seed']; got {unknown}.")
    if options.get("split_rule", "seeded") not in SPLIT_RULES:
        raise ConfigError(f"The 'split_rule' option of {card.name} must be one of {list(SPLIT_RULES)}. "
                          f"Got {options['split_rule']!r} instead.")
