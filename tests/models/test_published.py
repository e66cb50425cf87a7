"""The published cards: every model the issue names is there, with the source and contract its publisher used."""

from __future__ import annotations

import pytest

from medtransfer.models import MODELS, ModelCard
from medtransfer.models.convert import CONVERTERS
from medtransfer.models.published import PUBLISHED

# The reference studies' models (issue #4), by their names.
STUDY_MODELS = [
    "insdis", "moco-v1", "moco-v2", "pcl-v1", "pcl-v2", "pirl", "simclr-v1", "simclr-v2", "sela-v2", "infomin",
    "byol", "deepcluster-v2", "swav", "barlowtwins", "supervised-r18", "supervised-r50", "supervised-d121",
    "inat2021", "inat2021-mini", "supervised-chestx-ray14", "supervised-chexpert", "imagenet-chestx-ray14",
    "imagenet-chexpert", "mimic-chexpert-lr0.01", "mimic-chexpert-lr0.1", "mimic-chexpert-lr1.0", "moco-cxr-r18",
    "moco-cxr-d121", "dino-resnet50", "dino-vit-s16", "dino-vit-b16",
]


def test_every_study_model_is_registered_once() -> None:
    names = [c.name for c in PUBLISHED]
    assert sorted(names) == sorted(STUDY_MODELS) and len(set(names)) == len(names)
    assert all(name in MODELS for name in names)


@pytest.mark.parametrize("card", PUBLISHED, ids=lambda c: c.name)
def test_downloadable_cards_name_their_file(card: ModelCard) -> None:
    if card.url:
        assert card.filename == card.url.rsplit("/", 1)[-1]
    else:
        assert "models convert" not in card.manual and card.manual.endswith(".")  # hub appends the convert command


def test_torchvision_files_pin_the_hash_in_their_name() -> None:
    for name in ("supervised-r18", "supervised-r50", "supervised-d121"):
        card = MODELS.get(name)
        assert card.filename is not None and card.sha256 is not None
        assert card.filename.endswith(f"-{card.sha256}.pth")


def test_special_input_contracts() -> None:
    assert {MODELS.get(f"simclr-{v}").input.normalization for v in ("v1", "v2")} == {"none"}
    assert {MODELS.get(f"mimic-chexpert-lr{lr}").input.normalization for lr in ("0.01", "0.1", "1.0")} == {"histeq"}
    assert MODELS.get("moco-v2").input.normalization == "meanstd"


def test_byol_runs_with_tf_same_padding_and_needs_trust() -> None:
    card = MODELS.get("byol")
    assert card.arch == "resnet50-tfsame" and CONVERTERS.get(card.converter).reader == "pickle"
