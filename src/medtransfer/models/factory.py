"""`create(name)`: one path from a model name to a feature extractor that carries its card."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from medtransfer.errors import CheckpointError
from medtransfer.models import (
    backbones3d,  # noqa: F401  (registers the 3D encoders in ARCHS)
    hub,
)
from medtransfer.models.backbones import build
from medtransfer.models.card import ModelCard
from medtransfer.models.local import is_model_dir, read_model_dir, weights_path
from medtransfer.models.weights import load_strict, read_state_dict
from medtransfer.models.zoo import MODELS


def create(name: str, weights: str | Path | None = None, *, pretrained: bool = True, trust: bool = False) -> nn.Module:
    """Build the registered model `name`, returning pooled features (B, D), with its card as `.card`.

    Args:
        name: a registered model name (``medtransfer models list``), or a model folder (``card.json`` +
            ``model.safetensors``, as `medtransfer pretrain` and `medtransfer models convert` write).
        weights: a local weights file. For a zoo model with published weights: a copy of the original published
            file (checked against the card's sha256, converted on the way), or a ``.safetensors`` file of the
            converted weights. For other models: a ``.safetensors`` file or a flat torch state dict.
            None uses the model's own weights: the converted folder of a zoo model (`medtransfer models fetch`),
            or the fixed-seed random initialisation.
        pretrained: False builds a published model's architecture at its random initialisation, without weights.
        trust: allow a full unpickle of `weights` (needed only for BYOL's .pkl; see `medtransfer.models.hub`).

    Raises:
        CheckpointError: a zoo model's weights are not on disk (the message says how to fetch or convert them),
            or the weights do not fit the architecture.

    Examples:
        >>> model = create("resnet18-small")
        >>> model(torch.zeros(2, 3, 28, 28)).shape
        torch.Size([2, 512])
        >>> create("moco-v2", weights="moco_v2_800ep_pretrain.pth.tar")  # doctest: +SKIP
    """
    folder = None
    if name not in MODELS and is_model_dir(name):
        folder = Path(name)
        card, _ = read_model_dir(folder)
    else:
        card = MODELS.get(name)
    model = build(card.arch, card.input.in_chans, seed=card.init_seed)
    if weights is None and folder is not None:
        weights = weights_path(folder)
    elif weights is None and card.published and pretrained:
        weights = _converted_weights(card)
    if weights is not None and card.published and folder is None and Path(weights).suffix != ".safetensors":
        hub.check_digest(card, weights)
        model = hub.convert_file(weights, arch=card.arch, converter=card.converter or "", trust=trust,
                                 in_chans=card.input.in_chans)
    elif weights is not None:
        load_strict(model, read_state_dict(weights), source=str(weights))
    model.card = card  # type: ignore[assignment]
    return model.eval()


def _converted_weights(card: ModelCard) -> Path:
    if not hub.is_converted(card.name):
        raise CheckpointError(f"Model {card.name!r} has no weights on this machine (looked in "
                              f"{hub.converted_dir(card.name)}). {hub.how_to_get(card)}")
    return weights_path(hub.converted_dir(card.name))


def create_from_checkpoint(path: str | os.PathLike[str], arch: str, fmt: str = "torchvision", *,
                           trust: bool = False) -> nn.Module:
    """Build `arch` from a user's checkpoint in the source format `fmt`, loaded strictly, with an ad-hoc card.

    Args:
        path: the checkpoint (e.g. a MoCo ``checkpoint_0199.pth.tar`` of your own pretraining).
        arch: an architecture in ``ARCHS`` (``resnet50``, ``densenet121``, ``vit-s16`` ...).
        fmt: a converter in ``CONVERTERS`` (``torchvision``, ``moco``, ``swav``, ``dino`` ...).
        trust: allow a full unpickle of `path`.

    Examples:
        >>> model = create_from_checkpoint("checkpoint_0199.pth.tar", "resnet50", "moco")  # doctest: +SKIP
    """
    model = hub.convert_file(path, arch=arch, converter=fmt, trust=trust)
    digest = hub.file_digest(path) if Path(path).is_file() else ""
    model.card = hub.user_card(path, model, arch=arch, fmt=fmt, digest=digest)  # type: ignore[assignment]
    return model.eval()


def card_of(model: nn.Module) -> ModelCard:
    """The ModelCard a model was created with."""
    card = getattr(model, "card", None)
    if not isinstance(card, ModelCard):
        raise CheckpointError(f"{type(model).__name__} has no ModelCard; build it with medtransfer.models.create().")
    return card
