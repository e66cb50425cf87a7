from __future__ import annotations

from pathlib import Path

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


def test_published_model_without_weights_says_how_to_fetch() -> None:
    with pytest.raises(CheckpointError, match=r"'moco-v2' has no weights on this machine .*Run `medtransfer models "
                                              r"fetch moco-v2` \(downloads https://dl.fbaipublicfiles.com/moco/"):
        create("moco-v2")


def test_pretrained_false_builds_the_architecture_only() -> None:
    model = create("moco-cxr-r18", pretrained=False)
    assert card_of(model).name == "moco-cxr-r18" and model(torch.zeros(1, 3, 32, 32)).shape == (1, 512)


def test_create_from_checkpoint_in_a_source_format(tmp_path: Path) -> None:
    from medtransfer.models import create_from_checkpoint
    from medtransfer.models.backbones import build

    source = build("resnet18", seed=3).eval()
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "swav_800ep_pretrain.pth.tar"
    torch.save(state | {"module.prototypes.weight": torch.zeros(30, 8)}, path)
    model = create_from_checkpoint(path, "resnet18", "swav")
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), source(x), rtol=0, atol=0)
    assert card_of(model).feature_dim == 512 and card_of(model).method == "user checkpoint"


def test_create_checks_a_local_published_file_against_the_pinned_sha256(tmp_path: Path) -> None:
    from medtransfer.errors import ChecksumError

    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(ChecksumError, match="pins f37072fd"):
        create("supervised-r18", weights=path)
