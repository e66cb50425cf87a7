"""iChallenge-AMD (ADAM) and iChallenge-PM (PALM): 400 fundus photographs each, from the Baidu iChallenge.

The folders as the downloads unpack (under the data root)::

    Training400/AMD/A0001.jpg ...  Training400/Non-AMD/N0001.jpg ...          (iChallenge-AMD)
    PALM-Training400/P0001.jpg, H0001.jpg, N0001.jpg ...                     (iChallenge-PM; the zip nests
                                                                              PALM-Training400/PALM-Training400/)

Labels: AMD is the ``AMD/`` folder (and the ``A`` prefix); pathologic myopia is the ``P`` prefix, while high
myopia (``H``) and normal (``N``) eyes are negatives, the PALM organisers' own coding (Anton et al. read a
user-made CSV to the same effect). No official split with labels: a seeded stratified 70/10/20
(``split_rule=seeded``) or Anton et al.'s 80/20 row shuffle (``anton2022``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medtransfer.data.base import DATASETS, DatasetCard, DatasetEntry, default_data_root
from medtransfer.data.labelled import LabelledFiles, Layout, check_split_options, find_root, split_files
from medtransfer.errors import DataError

URL = "https://ai.baidu.com/broad/introduction"
AMD = Layout("iChallenge-AMD", "Training400/{AMD/A0001.jpg ..., Non-AMD/N0001.jpg ...}", URL,
             "a Baidu AI Studio account and the challenge's terms")
PM = Layout("iChallenge-PM", "PALM-Training400/{P0001.jpg, H0001.jpg, N0001.jpg ...}", URL,
            "a Baidu AI Studio account and the challenge's terms")
_CITE_AMD = "H. Fu et al. ADAM: Automatic detection challenge on age-related macular degeneration. IEEE Dataport 2020."
_CITE_PM = "H. Fu et al. PALM: Pathologic myopia challenge. IEEE Dataport 2019."

CARDS = {
    "ichallenge-amd": DatasetCard(name="ichallenge-amd", task="binary", label_names=("non-AMD", "AMD"), channels=3,
                                  metrics=("accuracy", "auc"), default_metric="auc", license=AMD.licence_note,
                                  citation=_CITE_AMD, source=URL, description="iChallenge-AMD: AMD vs not.",
                                  extra={"layout": AMD.expected, "published_counts": {"AMD": 89, "non-AMD": 311},
                                         "label_rule": "the AMD/ folder",
                                         "options": "split_rule=seeded|anton2022; seed"}),
    "ichallenge-pm": DatasetCard(name="ichallenge-pm", task="binary",
                                 label_names=("non-pathologic", "pathologic myopia"), channels=3,
                                 metrics=("accuracy", "auc"), default_metric="auc", license=PM.licence_note,
                                 citation=_CITE_PM, source=URL,
                                 description="iChallenge-PM: pathologic myopia vs high myopia or normal.",
                                 extra={"layout": PM.expected,
                                        "published_counts": {"pathologic myopia": 213, "non-pathologic": 187},
                                        "label_rule": "P prefix -> pathologic myopia; H, N -> not",
                                        "options": "split_rule=seeded|anton2022; seed"}),
}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.jpg") if not p.name.startswith("."))


def load_ichallenge(card: DatasetCard, split: str, *, data_root: str | os.PathLike[str] | None = None,
                    split_rule: str = "seeded", seed: int = 0) -> LabelledFiles:
    """One split of iChallenge-AMD or -PM (see the module docstring)."""
    check_split_options(card, {"split_rule": split_rule})
    base = default_data_root(data_root)
    if card.name == "ichallenge-amd":
        root = find_root(base, ("", "iChallenge-AMD"), "Training400", AMD) / "Training400"
        amd, other = _images(root / "AMD"), _images(root / "Non-AMD")
        if not amd or not other:
            raise AMD.missing(root, "images in both AMD/ and Non-AMD/")
        paths, y, layout = amd + other, np.array([1] * len(amd) + [0] * len(other), np.int64), AMD
    else:
        root = find_root(base, ("PALM-Training400/PALM-Training400", "PALM-Training400", ""), "", PM)
        paths = _images(root)
        bad = [p.name for p in paths if p.name[:1] not in "PHN"]
        if not paths or bad:
            raise DataError(f"iChallenge-PM: {str(root)!r} must hold images named P*, H* or N*.jpg (pathologic, "
                            f"high myopia, normal); found {bad[:3] or 'none'}. Layout: {PM.expected}; download it "
                            f"from {URL} ({PM.licence_note}).")
        y, layout = np.array([int(p.name.startswith("P")) for p in paths], np.int64), PM
    return split_files(card, split, paths, y, rule=split_rule, seed=seed, layout=layout)


for _card_ in CARDS.values():
    DATASETS.add(_card_.name, DatasetEntry(_card_, load_ichallenge, check_split_options))
