"""segment needs masks, the other protocols class labels: refused before any image is read, with the way out."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from medtransfer import data, models
from medtransfer.cli import app
from medtransfer.errors import ConfigError, DataError
from medtransfer.runner._kinds import check_protocol_fits, is_segmentation


def test_check_protocol_fits() -> None:
    assert is_segmentation("drive") and not is_segmentation("breastmnist") and is_segmentation("no-such") is None
    for protocol in ("linear", "knn", "fewshot", "finetune"):
        check_protocol_fits(protocol, "phantom-binary-28")
        with pytest.raises(ConfigError, match=rf"'drive' is a segmentation dataset .*: {protocol} needs class labels. "
                                              "Evaluate it with `medtransfer eval segment`"):
            check_protocol_fits(protocol, "drive")
    check_protocol_fits("segment", "drive")
    with pytest.raises(ConfigError, match="'breastmnist' has class labels, not segmentation masks"):
        check_protocol_fits("segment", "breastmnist")


@pytest.mark.parametrize("protocol", ["fewshot", "linear", "finetune"])
def test_cli_refuses_before_extracting(protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_extraction(*args: object, **kwargs: object) -> None:
        raise AssertionError("features were extracted")

    monkeypatch.setattr("medtransfer.features.extract", no_extraction)
    out = CliRunner().invoke(app, ["eval", protocol, "--model", "test-cnn", "--dataset", "phantom-seg-lesion-28"])
    assert out.exit_code != 0 and isinstance(out.exception, ConfigError)
    assert "is a segmentation dataset" in str(out.exception)


def test_finetuner_refuses_masks() -> None:
    from medtransfer.protocols.finetune import Finetuner

    with pytest.raises(DataError, match="is a segmentation dataset .* finetune needs class labels"):
        Finetuner(steps=1).fit(models.create("test-cnn"), data.load("phantom-seg-lesion-28", "train", n=4))
