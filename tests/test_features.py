from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medtransfer import features
from medtransfer.data.base import ArrayDataset, DatasetCard
from medtransfer.data.transforms import preprocess
from medtransfer.features import extract
from medtransfer.models import create

CARD = DatasetCard("tiny", "binary", ("a", "b"), image_size=16)


def _dataset(n: int = 40, split: str = "train", seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 16, 16, 1), dtype=np.uint8)
    return ArrayDataset(CARD, split, images, np.arange(n) % 2, fingerprint=f"tiny-{split}-{n}-{seed}")


def test_features_equal_bare_forward() -> None:
    model, ds = create("test-cnn"), _dataset()
    fs = extract(model, ds, batch_size=16, bf16=False)
    x = preprocess(ds.images(np.arange(len(ds))), **vars(model.card.input))
    with torch.inference_mode():
        expected = model(x).numpy()
    np.testing.assert_allclose(fs.x, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(fs.y, ds.labels)


def test_second_run_hits_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    model, ds = create("test-cnn"), _dataset()
    first = extract(model, ds, bf16=False)
    calls = []
    monkeypatch.setattr(features, "_write_features", lambda *a, **k: calls.append(1))
    second = extract(model, ds, bf16=False)
    assert not calls and second.key == first.key
    np.testing.assert_array_equal(np.asarray(second.x), np.asarray(first.x))
    assert isinstance(second.x, np.memmap)


def test_cache_key_changes_with_what_determines_features() -> None:
    model, ds = create("test-cnn"), _dataset()
    base = extract(model, ds, bf16=False).key
    assert extract(model, _dataset(seed=1), bf16=False).key != base  # content
    assert extract(model, _dataset(split="test"), bf16=False).key != base  # split
    assert extract(model, ds, bf16=False, input_size=24).key != base  # preprocessing
    assert extract(model, ds, bf16=True).key != base  # precision
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert extract(model, ds, bf16=False).key != base  # weights


def test_force_recomputes_and_cache_off_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    model, ds = create("test-cnn"), _dataset()
    fs = extract(model, ds, bf16=False, cache=False)
    assert fs.x.shape == (40, 16)
    assert list((features.home() / "features").iterdir()) == []  # no entry, no leftover tmp folder
    extract(model, ds, bf16=False)
    calls = []
    real = features._write_features
    monkeypatch.setattr(features, "_write_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    extract(model, ds, bf16=False, force=True)
    assert calls == [1]


def test_bf16_close_to_fp32() -> None:
    model, ds = create("resnet18-small"), _dataset(n=8)
    a = extract(model, ds, bf16=False, cache=False).x
    b = extract(model, ds, bf16=True, cache=False).x
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()


def test_wrong_feature_dim_is_reported() -> None:
    model = create("test-cnn")
    model.card = dataclasses.replace(model.card, feature_dim=17)
    with pytest.raises(RuntimeError, match="16-d features; its card says feature_dim=17"):
        extract(model, _dataset(), bf16=False)


def test_a_3d_dataset_needs_a_3d_model() -> None:
    from medtransfer import data
    from medtransfer.errors import DataError

    with pytest.raises(DataError, match="takes 2D images but dataset 'phantom3d-binary-28' holds 3D ones"):
        extract(create("test-cnn"), data.load("phantom3d-binary-28", "test", n=4))


@pytest.mark.parametrize("name", ["test-cnn3d", "resnet10-3d"])
def test_volumes_extract_with_a_3d_model_equal_to_a_bare_forward(name: str) -> None:
    from medtransfer import data

    model, ds = create(name), data.load("phantom3d-binary-28", "test", n=6)
    fs = extract(model, ds, batch_size=4, bf16=False, cache=False)
    x = preprocess(ds.images(np.arange(len(ds))), **vars(model.card.input))
    with torch.inference_mode():
        expected = model(x).numpy()
    assert fs.x.shape == (6, model.card.feature_dim)
    np.testing.assert_allclose(fs.x, expected, rtol=1e-4, atol=1e-5)


def test_large_volumes_are_extracted_in_smaller_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    from medtransfer import data

    sizes: list[int] = []
    real = features.iter_batches
    monkeypatch.setattr(features, "iter_batches", lambda ds, c, b, **kw: sizes.append(b) or real(ds, c, b, **kw))
    fs = extract(create("test-cnn3d"), data.load("phantom3d-binary-64", "test", n=20), batch_size=128, cache=False)
    assert sizes == [16] and fs.x.shape == (20, 16)  # 2**22 voxels per batch: 16 volumes of 64^3
    extract(create("test-cnn3d"), data.load("phantom3d-binary-28", "test", n=4), batch_size=128, cache=False)
    extract(create("test-cnn"), _dataset(4), batch_size=128, cache=False)
    assert sizes[1:] == [128, 128]  # 28^3 volumes and images keep the asked batch


def test_prefetching_gives_the_same_batches() -> None:
    model, ds = create("test-cnn"), _dataset(n=37)
    plain = list(features.iter_batches(ds, model.card.input, 8))
    ahead = list(features.iter_batches(ds, model.card.input, 8, prefetch=True))
    assert [len(b) for b in plain] == [8, 8, 8, 8, 5]
    assert all(torch.equal(a, b) for a, b in zip(plain, ahead, strict=True))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_a_cuda_device_that_is_not_there_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from medtransfer.errors import ConfigError

    monkeypatch.delenv("MEDTRANSFER_DEVICE", raising=False)
    assert features.default_device().type == "cpu" and features.default_device("auto").type == "cpu"
    with pytest.raises(ConfigError, match="sees no CUDA device. Use device 'cpu' or 'auto'"):
        features.default_device("cuda")
    monkeypatch.setenv("MEDTRANSFER_DEVICE", "cuda:0")  # the environment's choice is checked the same way
    with pytest.raises(ConfigError, match="'cuda:0' was asked for"):
        features.default_device()
    monkeypatch.setenv("MEDTRANSFER_DEVICE", "cpu")
    assert features.default_device() == torch.device("cpu")
    assert features.default_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="not a device torch knows"):
        features.default_device("gpu0")


def test_a_cuda_index_must_be_one_of_the_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    from medtransfer.errors import ConfigError

    monkeypatch.delenv("MEDTRANSFER_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # two GPUs, as a cluster node would show them
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert features.default_device() == torch.device("cuda")
    assert features.default_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"only 2 CUDA device\(s\) are visible \(cuda:0 to cuda:1\)"):
        features.default_device("cuda:2")
