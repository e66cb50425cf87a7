"""Shenzhen chest X-rays (Jaeger et al. 2014): 662 frontal CXRs, 326 normal and 336 with tuberculosis.

The folder as the NLM download unpacks (``ChinaSet_AllFiles/`` or its content, under the data root)::

    CXR_png/CHNCXR_0001_0.png ...          the last digit of the name: 0 normal, 1 tuberculosis
    ClinicalReadings/CHNCXR_0001_0.txt ... sex, age and the reading ("normal" or the findings)

The label is the file name's last digit, which is the NLM's own coding and agrees with the readings (Anton et al.
map a metadata CSV's findings: 'normal' -> 0, anything else -> 1; the same labels). No official split: a seeded,
stratified 70/10/20 (``split_rule=seeded``; each image is its own patient), or Anton et al.'s 80/20 row shuffle
(``anton2022``). Hosseinzadeh Taher et al.'s lists (463/65/134) are not public.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medtransfer.data.base import DATASETS, DatasetCard, DatasetEntry, default_data_root
from medtransfer.data.labelled import LabelledFiles, Layout, check_split_options, find_root, split_files
from medtransfer.errors import DataError

URL = "https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets"
_CITATION = ("S. Jaeger et al. Two public chest X-ray datasets for computer-aided screening of pulmonary diseases. "
             "Quant. Imaging Med. Surg. 4(6):475-477 (2014).")


def tb_card(name: str, description: str, counts: dict[str, int], layout: Layout) -> DatasetCard:
    return DatasetCard(name=name, task="binary", label_names=("normal", "tuberculosis"), channels=1,
                       metrics=("accuracy", "auc"), default_metric="auc", license="public (NLM); cite the data set",
                       citation=_CITATION, source=URL, description=description,
                       extra={"layout": layout.expected, "published_counts": counts,
                              "label_rule": "the file name's last digit: _0 normal, _1 tuberculosis",
                              "options": "split_rule=seeded|anton2022 (seeded 70/10/20); seed"})


def tb_files(root: Path, prefix: str, layout: Layout) -> tuple[list[Path], np.ndarray]:
    """The CXR_png images named <prefix>_NNNN_<label>.png, and their labels from the last digit."""
    paths = sorted(p for p in (root / "CXR_png").glob(f"{prefix}_*.png") if not p.name.startswith("."))
    if not paths:
        raise layout.missing(root / "CXR_png", f"images named {prefix}_NNNN_0.png / _1.png")
    bad = [p.name for p in paths if p.stem[-2:] not in ("_0", "_1")]
    if bad:
        raise DataError(f"{layout.dataset}: {bad[:3]} do not end in _0 (normal) or _1 (tuberculosis), the NLM's "
                        "naming the labels come from; rename them as the download names them.")
    return paths, np.array([int(p.stem[-1]) for p in paths], np.int64)


LAYOUT = Layout("Shenzhen", "ChinaSet_AllFiles/{CXR_png/CHNCXR_NNNN_L.png, ClinicalReadings/}", URL)
CARD = tb_card("shenzhen", "Shenzhen TB chest X-rays (binary: tuberculosis vs normal).",
               {"normal": 326, "tuberculosis": 336}, LAYOUT)


def load_shenzhen(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
                  split_rule: str = "seeded", seed: int = 0) -> LabelledFiles:
    """One split of the Shenzhen TB set (see the module docstring)."""
    check_split_options(card, {"split_rule": split_rule})
    root = find_root(default_data_root(data_root), ("", "ChinaSet_AllFiles"), "CXR_png", LAYOUT)
    paths, y = tb_files(root, "CHNCXR", LAYOUT)
    return split_files(card, split, paths, y, rule=split_rule, seed=seed, layout=LAYOUT)


DATASETS.add(CARD.name, DatasetEntry(CARD, load_shenzhen, check_split_options))
