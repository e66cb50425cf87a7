from __future__ import annotations

import pytest
import torch

from medtransfer.errors import CheckpointError, UnknownNameError
from medtransfer.models import card_of, create


def test_random_init_is_reproducible() -> None:
    a, b = create("resnet18-small"), create("resnet18-small")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_create_does_not_touch_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    create("test-cnn")
    assert torch.equal(torch.rand(1), expected)


def test_card_is_attached_and_model_in_eval_mode() -> None:
    model = create("test-cnn")
    assert card_of(model).name == "test-cnn" and not model.training


def test_card_of_a_foreign_module() -> None:
    with pytest.raises(CheckpointError, match="has no ModelCard; build it with medtransfer.models.create"):
        card_of(torch.nn.Linear(2, 2))


def test_unknown_model() -> None:
    with pytest.raises(UnknownNameError, match="Unknown model 'resnet-18'. Did you mean 'resnet18'"):
        create("resnet-18")
