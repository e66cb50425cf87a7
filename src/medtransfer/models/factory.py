"""`create(name)`: one path from a model name to a feature extractor that carries its card."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from medtransfer.errors import CheckpointError
from medtransfer.models.backbones import ARCHS
from medtransfer.models.card import ModelCard
from medtransfer.models.local import is_model_dir, read_model_dir, weights_path
from medtransfer.models.weights import load_strict, read_state_dict
from medtransfer.models.zoo import MODELS


def create(name: str, weights: str | Path | None = None) -> nn.Module:
    """Build the registered model `name`, returning pooled features (B, D), with its card as `.card`.

    Args:
        name: a registered model name (``medtransfer models list``), or a model folder (``card.json`` +
            ``model.safetensors``, as `medtransfer pretrain` writes; see `medtransfer.models.local`).
        weights: a local weights file (``.safetensors`` or a flat torch state dict) to load strictly;
            None uses the card's own weights, or its fixed-seed random initialisation.

    Examples:
        >>> model = create("resnet18-small")
        >>> model(torch.zeros(2, 3, 28, 28)).shape
        torch.Size([2, 512])
    """
    folder = None
    if name not in MODELS and is_model_dir(name):
        folder = Path(name)
        card, _ = read_model_dir(folder)
    else:
        card = MODELS.get(name)
    builder = ARCHS.get(card.arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(card.init_seed)  # "random init" is one reproducible model, whose features can be cached
        model = builder(card.input.in_chans)
    if weights is None and folder is not None:
        weights = weights_path(folder)
    if weights is not None:
        load_strict(model, read_state_dict(weights), source=str(weights))
    elif card.url is not None:
        raise CheckpointError(f"Model {name!r} needs its published weights ({card.url}); fetching them is not "
                              f"available yet. Pass weights=<local file> instead.")
    model.card = card  # type: ignore[assignment]
    return model.eval()


def card_of(model: nn.Module) -> ModelCard:
    """The ModelCard a model was created with."""
    card = getattr(model, "card", None)
    if not isinstance(card, ModelCard):
        raise CheckpointError(f"{type(model).__name__} has no ModelCard; build it with medtransfer.models.create().")
    return card
