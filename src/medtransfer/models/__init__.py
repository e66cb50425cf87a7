"""Models: cards, backbones, the zoo of named checkpoints, and `create(name)`."""

from __future__ import annotations

from medtransfer.models import backbones3d  # noqa: F401  (registers the 3D encoders)
from medtransfer.models.backbones import ARCHS
from medtransfer.models.card import IMAGENET_MEAN, IMAGENET_STD, InputContract, ModelCard
from medtransfer.models.factory import card_of, create, create_from_checkpoint
from medtransfer.models.local import is_model_dir, read_model_dir, save_model_dir
from medtransfer.models.weights import load_strict, read_state_dict, weights_sha256
from medtransfer.models.zoo import MODELS

__all__ = ["ARCHS", "IMAGENET_MEAN", "IMAGENET_STD", "MODELS", "InputContract", "ModelCard", "card_of", "create",
           "create_from_checkpoint",
           "is_model_dir", "load_strict", "read_model_dir", "read_state_dict", "save_model_dir", "weights_sha256"]
