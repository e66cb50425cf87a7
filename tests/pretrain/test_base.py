"""PretrainConfig validation, method options, and the method registry."""

from __future__ import annotations

import pytest

from medtransfer.errors import ConfigError, UnknownNameError
from medtransfer.pretrain import METHODS, PretrainConfig
from medtransfer.pretrain.base import option


def test_every_method_of_the_issue_is_registered_with_its_dims() -> None:
    assert set(METHODS.names()) == {"simclr", "byol", "mocov2", "barlowtwins", "rotation", "rpl", "jigsaw", "cpc",
                                    "exemplar"}
    assert {n for n in METHODS.names() if 3 in METHODS.get(n).dims} == {"rotation", "rpl", "jigsaw", "cpc",
                                                                         "exemplar"}


@pytest.mark.parametrize(("field", "value", "match"), [
    ("epochs", 0, "'epochs' parameter of PretrainConfig must be an int in the range \\[1, inf\\)"),
    ("batch_size", 1, "'batch_size'"),
    ("dims", 4, "must be 2 or 3"),
    ("samples", 1, "at least 2"),
])
def test_bad_config_values_raise_naming_the_field(field: str, value: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PretrainConfig("simclr", "phantom-binary-32", **{field: value})


def test_option_returns_default_or_value_and_rejects_a_wrong_type() -> None:
    cfg = PretrainConfig("cpc", "phantom-binary-32", options={"pps": 3, "margin": 2})
    assert option(cfg, "pps", 5, int) == 3
    assert option(cfg, "code_size", 1024, int) == 1024
    assert option(cfg, "margin", 1.0, float) == 2.0
    bad = PretrainConfig("cpc", "phantom-binary-32", options={"pps": "five"})
    with pytest.raises(ConfigError, match="'pps' option of method 'cpc' must be int"):
        option(bad, "pps", 5, int)


def test_unknown_method_suggests_a_close_name() -> None:
    with pytest.raises(UnknownNameError, match="simclr"):
        METHODS.get("simclear")
