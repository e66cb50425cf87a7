"""Registry-wide: every model card builds and behaves, with no per-model code (timm test_models style)."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from medtransfer.models import ARCHS, MODELS, create
from medtransfer.models.backbones import build
from medtransfer.models.convert import CONVERTERS


@functools.cache
def _features_of_arch(arch: str, in_chans: int, dims: int) -> tuple[int, ...]:
    """Output shape of `arch` on a small batch; each architecture is built once (ResNet-50 backs 20 cards)."""
    model: nn.Module = build(arch, in_chans)
    size = (16,) * 3 if dims == 3 else (32, 32)
    with torch.inference_mode():
        out = model.eval()(torch.randn(2, in_chans, *size))
    assert torch.isfinite(out).all()
    return tuple(out.shape)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_maps_a_batch_to_its_feature_dim(name: str) -> None:
    card = MODELS.get(name)
    assert _features_of_arch(card.arch, card.input.in_chans, card.dims) == (2, card.feature_dim)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_card_names_a_registered_architecture(name: str) -> None:
    assert MODELS.get(name).arch in ARCHS


@pytest.mark.parametrize("name", MODELS.names())
def test_every_card_documents_itself(name: str) -> None:
    card = MODELS.get(name)
    assert card.name == name and card.description and card.feature_dim > 0


@pytest.mark.parametrize("name", [n for n in MODELS.names() if MODELS.get(n).published])
def test_every_published_card_has_a_converter_and_a_source(name: str) -> None:
    card = MODELS.get(name)
    assert card.converter in CONVERTERS
    assert (card.url or "").startswith("https://") or card.manual  # fetchable, or says how to get the file
    assert card.paper and card.license and card.method and card.pretraining_data != "none"


def test_random_init_models_still_create_without_downloads() -> None:
    model = create("test-cnn")
    assert model(torch.zeros(1, 3, 28, 28)).shape == (1, 16)
