"""The reference datasets' shared pieces: patient splits, Anton's shuffle against pandas, CSV and layout errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medtransfer.data.labelled import SEEDED, Layout, check_files, group_split, read_table, rule_split, shuffled_split
from medtransfer.errors import ConfigError, DataError

LAYOUT = Layout("Demo", "demo/{labels.csv, images/}", "https://example.org/demo", "a licence click-through")


def test_group_split_keeps_each_patient_in_one_split_and_stratifies() -> None:
    groups = [f"p{i // 2}" for i in range(200)]  # 100 patients, two images each
    labels = np.array([int(i // 2 < 30) for i in range(200)])  # 30 positive patients
    names = group_split(groups, SEEDED, seed=3, labels=labels)
    for g in set(groups):
        assert len({names[i] for i, h in enumerate(groups) if h == g}) == 1
    per = {s: {g for g, n in zip(groups, names, strict=True) if n == s} for s in ("train", "val", "test")}
    assert [len(per[s]) for s in ("train", "val", "test")] == [70, 10, 20]
    positives = {f"p{i}" for i in range(30)}
    assert [len(per[s] & positives) for s in ("train", "val", "test")] == [21, 3, 6]
    assert (group_split(groups, SEEDED, seed=3, labels=labels) == names).all()


def test_shuffled_split_is_pandas_sample_with_random_state_42() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"row": np.arange(37)})
    order = frame.sample(frac=1, random_state=42)["row"].to_numpy()  # what the reference does
    names = shuffled_split(37)
    assert set(order[: int(0.8 * 37)]) == set(np.flatnonzero(names == "train")) and (names == "test").sum() == 8


def test_rule_split_knows_its_rules() -> None:
    groups = [str(i) for i in range(50)]
    y = np.arange(50) % 2
    anton = rule_split("anton2022", groups, y, seed=0, dataset="demo")
    assert (anton == "test").sum() == 10 and (anton == "val").sum() == 8  # 20% of the 40 train rows
    with pytest.raises(ConfigError, match="'split' option of demo must be one of"):
        rule_split("official", groups, y, seed=0, dataset="demo")


def test_tables_and_files_name_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Demo: the file 'labels.csv' not found.*demo/.*example.org.*click-through"):
        read_table(tmp_path / "labels.csv", ("image",), LAYOUT)
    (tmp_path / "labels.csv").write_text("image,grade\na.png,1\n")
    with pytest.raises(DataError, match=r"lacks the column\(s\) \['level'\]; its columns are \['image', 'grade'\]"):
        read_table(tmp_path / "labels.csv", ("image", "level"), LAYOUT)
    assert read_table(tmp_path / "labels.csv", ("image",), LAYOUT) == [{"image": "a.png", "grade": "1"}]
    (tmp_path / "raw.csv").write_text("a.png, Benign\n")
    assert read_table(tmp_path / "raw.csv", ("file", "label"), LAYOUT, header=False) == [
        {"file": "a.png", "label": "Benign"}]
    with pytest.raises(DataError, match=r"2 images listed in its CSV are missing, e.g. \['"):
        check_files([tmp_path / "x.png", tmp_path / "y.png"], LAYOUT)


def test_small_strata_still_give_every_split_its_exact_share() -> None:
    # ten classes of 4-5 patients: rounding per class would leave val empty
    labels = np.repeat(np.arange(10), [4, 5] * 5)
    names = group_split([str(i) for i in range(45)], SEEDED, seed=0, labels=labels)
    # one cut of the interleaved order at round(0.7 * 45) = 31 and round(0.8 * 45) = 36 groups
    assert [(names == s).sum() for s in ("train", "val", "test")] == [31, 5, 9]


REFERENCE = ("chexpert", "chexpert-14", "chexpert-effusion", "chestxray14", "chestxray14-7", "shenzhen",
             "montgomery-tb", "eyepacs", "eyepacs-referable", "bach", "ichallenge-amd", "ichallenge-pm", "stoic",
             "rsna-pneumonia", "rsna-pe", "msd-pancreas")


@pytest.mark.parametrize("name", REFERENCE)
def test_every_reference_card_says_where_to_get_it_and_how_it_is_labelled(name: str) -> None:
    from medtransfer.data import get_card

    card = get_card(name)
    assert card.source.startswith("http") and card.license and card.citation and card.description
    assert {"layout", "label_rule", "options"} <= set(card.extra), name
