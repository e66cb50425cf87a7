"""CheXpert on a generated tree in the download's exact layout: each label rule, lateral views, patient splits."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtransfer.data import load
from medtransfer.data.chexpert import LABELS_14
from medtransfer.data.labelled import leaking_groups
from medtransfer.errors import ConfigError, DataError

HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *LABELS_14]  # train.csv / valid.csv as shipped


def _row(path: str, view: str, **labels: str) -> list[str]:
    return [path, "Female", "68", view, "AP" if view == "Frontal" else "", *(labels.get(c, "") for c in LABELS_14)]


def make_chexpert(root: Path, n_patients: int = 30) -> Path:
    """A CheXpert-v1.0-small tree: per patient a frontal and a lateral view of study1; valid.csv of 4 patients."""
    top = root / "CheXpert-v1.0-small"
    rng = np.random.default_rng(0)
    rows = []
    for p in range(1, n_patients + 1):
        for view, file in (("Frontal", "view1_frontal.jpg"), ("Lateral", "view2_lateral.jpg")):
            rel = f"CheXpert-v1.0-small/train/patient{p:05d}/study1/{file}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (20, 16), dtype=np.uint8)).save(root / rel)
            # patient 1: uncertain effusion; 2: positive; 3: negative; others: blank, or uncertain cardiomegaly
            effusion = {1: "-1.0", 2: "1.0", 3: "0.0"}.get(p, "")
            cardio = "-1.0" if p % 5 == 0 else "1.0" if p % 2 else ""
            rows.append(_row(rel, view, **{"Pleural Effusion": effusion, "Cardiomegaly": cardio, "Edema": "0.0"}))
    for name, body in (("train.csv", rows), ("valid.csv", [])):
        if name == "valid.csv":
            for p in range(64541, 64545):
                rel = f"CheXpert-v1.0-small/valid/patient{p:05d}/study1/view1_frontal.jpg"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((20, 16), p % 255, np.uint8)).save(root / rel)
                body.append(_row(rel, "Frontal", **{"Pleural Effusion": "1.0" if p % 2 else "0.0"}))
        with open(top / name, "w", newline="") as f:
            csv.writer(f).writerows([HEADER, *body])
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_chexpert(tmp_path)


def test_uncertain_labels_follow_the_chosen_policy(tree: Path) -> None:
    def effusion_of_patient_1(uncertain: str) -> list[int]:
        out = []
        for split in ("train", "val"):
            ds = load("chexpert", split, data_root=tree, uncertain=uncertain)
            out += [int(ds.labels[i, 4]) for i, g in enumerate(ds.groups) if g == "patient00001"]
        return out

    assert effusion_of_patient_1("ones") == [1] and effusion_of_patient_1("zeros") == [0]
    assert effusion_of_patient_1("ignore") == []  # an uncertain target: the image is left out
    ds = load("chexpert", "train", data_root=tree)
    assert ds.labels.dtype == np.uint8 and ds.labels.shape[1] == 5 and ds.card.label_names[4] == "Pleural Effusion"
    assert ds.images(np.arange(2)).shape == (2, 20, 16, 1)


def test_lateral_views_are_left_out_unless_asked_and_no_patient_crosses_splits(tree: Path) -> None:
    frontal = [load("chexpert-14", s, data_root=tree) for s in ("train", "val", "test")]
    assert sum(len(d) for d in frontal[:2]) == 30 and len(frontal[2]) == 4  # test = valid.csv
    assert all("lateral" not in p.name for d in frontal for p in d.paths)
    both = [load("chexpert-14", s, data_root=tree, frontal_only=False) for s in ("train", "val")]
    assert sum(len(d) for d in both) == 60
    assert leaking_groups(both) == set() and leaking_groups(frontal) == set()


def test_anton2022_split_is_the_reference_row_shuffle(tree: Path) -> None:
    from medtransfer.data.labelled import shuffled_split

    parts = {s: load("chexpert-effusion", s, data_root=tree, split_rule="anton2022", frontal_only=False)
             for s in ("train", "val", "test")}
    order = np.random.RandomState(42).permutation(60)  # pandas' sample(frac=1, random_state=42) order
    assert (shuffled_split(60) == "train").sum() == 48 and set(order[:48]) == set(
        np.flatnonzero(shuffled_split(60) == "train"))
    assert len(parts["train"]) + len(parts["val"]) == 48 and len(parts["test"]) == 12
    assert parts["train"].card.task == "binary" and set(np.unique(parts["train"].labels)) <= {0, 1}


def test_bad_trees_and_values_are_named(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="'train.csv' not found.*CheXpert-v1.0-small.*stanfordmlgroup"):
        load("chexpert", "train", data_root=tmp_path / "nothing")
    csv_path = tree / "CheXpert-v1.0-small" / "train.csv"
    text = csv_path.read_text()
    csv_path.write_text(text.replace("Frontal/Lateral", "View"))
    with pytest.raises(DataError, match=r"lacks the column\(s\) \['Frontal/Lateral'\]"):
        load("chexpert", "train", data_root=tree)
    csv_path.write_text(text.replace(",-1.0,", ",maybe,", 1))
    with pytest.raises(DataError, match="'maybe' in column"):
        load("chexpert", "train", data_root=tree)
    csv_path.write_text(text)
    next((tree / "CheXpert-v1.0-small" / "train").rglob("*.jpg")).unlink()
    with pytest.raises(DataError, match="1 images listed in its CSV are missing"):
        load("chexpert", "train", data_root=tree, frontal_only=False)
    with pytest.raises(ConfigError, match="'uncertain' option of chexpert must be one of"):
        load("chexpert", "train", data_root=tree, uncertain="lsr")


def test_the_patient_is_found_whatever_the_paths_prefix() -> None:
    from medtransfer.data.chexpert import _patient

    assert _patient("CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg") == "patient00001"
    assert _patient("train/patient00042/study2/view1_frontal.jpg") == "patient00042"
