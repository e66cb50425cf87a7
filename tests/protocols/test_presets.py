"""A preset's values with overrides: unknown presets named, a length given in one unit drops the other."""

from __future__ import annotations

import pytest

from medtransfer.errors import ConfigError
from medtransfer.protocols._presets import preset_values

PRESETS = {"short": {"steps": 100, "lr": 0.1}, "long": {"epochs": 50}}


def test_overrides_and_lengths() -> None:
    assert preset_values("x", PRESETS, "short", {"lr": 0.5}) == {"steps": 100, "lr": 0.5}
    assert preset_values("x", PRESETS, "short", {"epochs": 3}) == {"steps": None, "lr": 0.1, "epochs": 3}
    assert preset_values("x", PRESETS, "long", {"steps": 7}) == {"epochs": None, "steps": 7}
    assert preset_values("x", PRESETS, "long", {}, {"size": 512}) == {"epochs": 50, "size": 512}
    with pytest.raises(ConfigError, match=r"Unknown x preset 'shrt'. Did you mean 'short'\? Allowed presets: short"):
        preset_values("x", PRESETS, "shrt", {})
