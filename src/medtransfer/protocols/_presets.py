"""A named preset's values with a user's overrides on top (the trained protocols' presets)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medtransfer.errors import ConfigError
from medtransfer.registry import did_you_mean


def preset_values(kind: str, presets: Mapping[str, Mapping[str, Any]], preset: str, overrides: Mapping[str, Any],
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``presets[preset]`` (+ `extra`, e.g. a dataset-specific part) with `overrides` on top.

    A length the user gives replaces the preset's in whichever unit it has: ``epochs`` drops the preset's
    ``steps`` and the other way round.

    Raises:
        ConfigError: for an unknown preset, with the closest names.
    """
    if preset not in presets:
        raise ConfigError(f"Unknown {kind} preset {preset!r}.{did_you_mean(preset, list(presets))} "
                          f"Allowed presets: {', '.join(presets)}.")
    values = {**presets[preset], **(extra or {})}
    if "epochs" in overrides and "steps" not in overrides:
        values["steps"] = None
    if "steps" in overrides and "epochs" not in overrides:
        values["epochs"] = None
    return values | dict(overrides)
