"""FinetuneConfig presets, resolved as `finetune` resolves them."""

from __future__ import annotations

import pytest

from medtransfer.errors import ConfigError
from medtransfer.protocols import finetune
from medtransfer.protocols._finetune_config import PRESETS, FinetuneConfig, resolve_config


def test_presets() -> None:
    assert resolve_config("medmnist") == FinetuneConfig() and finetune.resolve_config is resolve_config
    anton = resolve_config("anton2022")
    assert (anton.optimizer, anton.steps, anton.epochs) == ("sgd", 5000, None)
    assert resolve_config("anton2022", epochs=2).steps is None
    assert set(PRESETS) == {"medmnist", "medmnist3d", "anton2022", "taleb2020", "hosseinzadeh2021"}
    hz = resolve_config("hosseinzadeh2021")
    assert (hz.lr, hz.batch_size, hz.schedule, hz.gamma, hz.plateau_patience, hz.patience) == (
        2e-4, 32, "plateau", 0.5, 5, 10)  # ReduceLROnPlateau(factor 0.5, patience 10 // 2), early stop at 10
    assert (hz.select_metric, hz.early_stopping, hz.test_crops, hz.augment) == ("loss", True, 10, "rrc_flip_rot7")
    with pytest.raises(ConfigError, match="Unknown finetune preset 'anton'"):
        resolve_config("anton")
