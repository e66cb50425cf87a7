from __future__ import annotations

import pytest

from medtransfer.errors import ConfigError
from medtransfer.models import InputContract, ModelCard


def test_defaults_are_the_imagenet_contract() -> None:
    c = InputContract()
    assert (c.input_size, c.in_chans, c.normalization) == (224, 3, "meanstd")
    assert ModelCard("m", "resnet18", 512).input == c


@pytest.mark.parametrize("kwargs, match", [
    ({"input_size": 4}, r"'input_size' parameter of InputContract must be an int in the range \[8, 1024\]"),
    ({"crop_pct": 1.5}, r"'crop_pct' parameter of InputContract must be a float in the range \[0.1, 1\]"),
    ({"in_chans": 1}, r"one value per input channel \(in_chans=1\)"),
])
def test_invalid_contract(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        InputContract(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"sha256": "F37072FD"}, r"'sha256' parameter of ModelCard 'm' must be 8 to 64 lower-case hex digits"),
    ({"sha256": "abc"}, r"must be 8 to 64 lower-case hex digits \(a digest or its prefix\) or None. Got 'abc'"),
    ({"url": "https://x/y.pth"}, r"ModelCard 'm' has a weights source but no 'converter'"),
])
def test_invalid_card(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ModelCard("m", "resnet18", 512, **kwargs)


def test_published_means_a_converter_is_named() -> None:
    assert ModelCard("m", "resnet18", 512, url="https://x/y.pth", converter="moco").published
    assert not ModelCard("m", "resnet18", 512).published
