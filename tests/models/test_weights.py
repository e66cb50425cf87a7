from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from medtransfer.errors import CheckpointError
from medtransfer.models import create, read_state_dict, weights_sha256


def _trained_copy() -> torch.nn.Module:
    model = create("test-cnn")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    return model


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_file_round_trip(tmp_path: Path, suffix: str) -> None:
    src = _trained_copy()
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(src.state_dict(), str(path))
    else:
        torch.save(src.state_dict(), path)
    loaded = create("test-cnn", weights=path)
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(loaded(x), src.eval()(x))
    assert weights_sha256(loaded) == weights_sha256(src) != weights_sha256(create("test-cnn"))


def test_wrong_architecture_lists_keys(tmp_path: Path) -> None:
    path = tmp_path / "r18.safetensors"
    save_file(create("resnet18-small").state_dict(), str(path))
    with pytest.raises(CheckpointError, match=r"14 missing keys \['body.0.weight'.*120 unexpected keys"):
        create("test-cnn", weights=path)


def test_wrong_shape_is_reported(tmp_path: Path) -> None:
    sd = create("test-cnn").state_dict()
    sd["body.0.weight"] = torch.zeros(8, 3, 5, 5)
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match=r"wrong shape.*body.0.weight: \(8, 3, 5, 5\) vs \(8, 3, 3, 3\)"):
        create("test-cnn", weights=tmp_path / "w.pth")


def test_truncated_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file(create("test-cnn").state_dict(), str(path))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        read_state_dict(path)


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.target),))  # type: ignore[attr-defined]


def test_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    evil = _Evil()
    evil.target = str(tmp_path / "pwned")  # type: ignore[attr-defined]
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": evil}, f)
    with pytest.raises(CheckpointError, match="Refused to load.*arbitrary code"):
        read_state_dict(path)
    assert not (tmp_path / "pwned").exists()


def test_nested_checkpoint_needs_conversion(tmp_path: Path) -> None:
    torch.save({"state_dict": create("test-cnn").state_dict(), "epoch": 3}, tmp_path / "ck.pth")
    with pytest.raises(CheckpointError, match="not a flat state dict"):
        read_state_dict(tmp_path / "ck.pth")


def test_missing_file() -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict("/nonexistent/w.safetensors")


def test_hash_is_remembered_until_a_weight_changes() -> None:
    model = create("test-cnn")
    first = weights_sha256(model)
    assert model.__dict__["_medtransfer_sha256"][1] == first and weights_sha256(model) == first
    with torch.no_grad():
        model.body[0].bias.add_(1.0)  # in place: bumps the version counter
    second = weights_sha256(model)
    assert second != first
    model.load_state_dict(create("test-cnn").state_dict())
    assert weights_sha256(model) == first
