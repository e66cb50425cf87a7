"""SegmentConfig: presets, the dataset-specific part of hosseinzadeh2021, and value checks."""

from __future__ import annotations

import pytest

from medtransfer.errors import ConfigError
from medtransfer.protocols._seg_config import SegmentConfig, resolve_config


def test_presets_and_dataset_specific_values() -> None:
    assert resolve_config() == SegmentConfig()
    drive = resolve_config("hosseinzadeh2021", dataset="drive")
    assert (drive.size, drive.loss) == (512, "bce")
    assert resolve_config("hosseinzadeh2021", dataset="drive", size=256).size == 256  # the user's value wins


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"size": 0}, r"The 'size' parameter of SegmentConfig must be an int in the range \[1, inf\). Got 0"),
    ({"encoder": "fozen"}, r"The 'encoder' parameter of SegmentConfig must be one of .* Did you mean 'frozen'"),
    ({"epochs": None}, "needs exactly one of 'epochs' and 'steps'"),
    ({"holdout": 1.5}, "0 < holdout < 1"),
])
def test_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SegmentConfig(**kwargs)  # type: ignore[arg-type]
