"""Registry-wide: every model card builds and behaves, with no per-model code (timm test_models style)."""

from __future__ import annotations

import pytest
import torch

from medtransfer.models import ARCHS, MODELS, create


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_maps_a_batch_to_its_feature_dim(name: str) -> None:
    model = create(name)
    with torch.inference_mode():
        out = model(torch.randn(2, model.card.input.in_chans, 32, 32))
    assert out.shape == (2, model.card.feature_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS.names())
def test_every_card_names_a_registered_architecture(name: str) -> None:
    assert MODELS.get(name).arch in ARCHS


@pytest.mark.parametrize("name", MODELS.names())
def test_every_card_documents_itself(name: str) -> None:
    card = MODELS.get(name)
    assert card.name == name and card.description and card.feature_dim > 0
