"""Models: cards, backbones, the zoo of named checkpoints, and `create(name)`.

The cards and the zoo are imported eagerly; everything that needs torch is imported on first use (PEP 562), so
`medtransfer models list` and `--help` do not wait seconds for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from medtransfer.models.card import IMAGENET_MEAN, IMAGENET_STD, InputContract, ModelCard
from medtransfer.models.local import is_model_dir, read_model_dir, save_model_dir
from medtransfer.models.zoo import MODELS

# name -> the module it is imported from when first used
_LAZY = {"ARCHS": "medtransfer.models.backbones3d",  # backbones' registry, with the 3D encoders registered
         "card_of": "medtransfer.models.factory", "create": "medtransfer.models.factory",
         "create_from_checkpoint": "medtransfer.models.factory", "load_strict": "medtransfer.models.weights",
         "read_state_dict": "medtransfer.models.weights", "weights_sha256": "medtransfer.models.weights"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


__all__ = ["ARCHS", "IMAGENET_MEAN", "IMAGENET_STD", "MODELS", "InputContract", "ModelCard", "card_of", "create",
           "create_from_checkpoint",
           "is_model_dir", "load_strict", "read_model_dir", "read_state_dict", "save_model_dir", "weights_sha256"]
