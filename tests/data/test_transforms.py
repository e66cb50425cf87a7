from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T

from medtransfer.data.transforms import match_channels, preprocess
from medtransfer.errors import DataError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("interp", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("crop_pct", [1.0, 0.875])
def test_matches_torchvision_resize_crop_normalize(rng: np.random.Generator, interp: str, crop_pct: float) -> None:
    images = rng.integers(0, 256, (3, 100, 120, 3), dtype=np.uint8)
    ours = preprocess(images, input_size=56, crop_pct=crop_pct, interpolation=interp, mean=MEAN, std=STD)
    mode = getattr(T.InterpolationMode, interp.upper())
    resize = T.Resize(int(round(56 / crop_pct)), mode, antialias=True)

    def ref(im: np.ndarray) -> torch.Tensor:
        x = resize(T.functional.to_dtype(torch.from_numpy(im).permute(2, 0, 1), torch.float32, scale=True))
        x = x.clamp(0, 1) if interp == "bicubic" else x  # we clamp bicubic overshoot, as PIL's uint8 output does
        return T.functional.normalize(T.functional.center_crop(x, [56]), MEAN, STD)

    expected = torch.stack([ref(im) for im in images])
    assert ours.shape == (3, 3, 56, 56)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


def test_grey_repeated_to_rgb_and_rgb_averaged_to_grey(rng: np.random.Generator) -> None:
    grey = rng.integers(0, 256, (2, 8, 8, 1), dtype=np.uint8)
    x = preprocess(grey, input_size=None, mean=(0, 0, 0), std=(1, 1, 1))
    assert x.shape == (2, 3, 8, 8) and torch.equal(x[:, 0], x[:, 2])
    rgb = torch.rand(2, 3, 4, 4)
    assert torch.allclose(match_channels(rgb, 1)[:, 0], rgb.mean(1))


def test_none_normalisation_keeps_unit_range(rng: np.random.Generator) -> None:
    im = np.full((1, 4, 4, 1), 255, dtype=np.uint8)
    assert preprocess(im, input_size=None, normalization="none").max() == 1.0


def test_volumes_resize_trilinear(rng: np.random.Generator) -> None:
    vols = rng.integers(0, 256, (2, 28, 28, 28, 1), dtype=np.uint8)
    assert preprocess(vols, input_size=32, mean=(0.5,), std=(0.5,), in_chans=1).shape == (2, 1, 32, 32, 32)


def test_list_of_sizes_is_resized_each(rng: np.random.Generator) -> None:
    images = [rng.integers(0, 256, (20, 30, 1), dtype=np.uint8), rng.integers(0, 256, (40, 40, 1), dtype=np.uint8)]
    assert preprocess(images, input_size=16).shape == (2, 3, 16, 16)
    with pytest.raises(DataError, match="input_size"):
        preprocess(images, input_size=None)


def _covidprognosis_histeq(image: np.ndarray) -> np.ndarray:
    """HistogramNormalize of facebookresearch/CovidPrognosis (covidprognosis/data/transforms.py), one image."""
    hist, bins = np.histogram(image.flatten(), 256, density=True)
    cdf = hist.cumsum()
    cdf = 255 * cdf / cdf[-1]
    return np.interp(image.flatten(), bins[:-1], cdf).reshape(image.shape)


def test_histogram_equalize_matches_covidprognosis() -> None:
    from medtransfer.data.transforms import histogram_equalize

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.beta(2, 5, size=(3, 3, 20, 20)))
    x[1] = torch.from_numpy(rng.integers(0, 256, size=(3, 20, 20)) / 255.0)  # uint8-like values: many ties
    x[2, :, :10] = 0.0  # a big block of one value
    ours = histogram_equalize(x)
    for b in range(3):
        np.testing.assert_allclose(ours[b].numpy(), _covidprognosis_histeq(x[b].numpy()), atol=1e-9)


def test_preprocess_histeq_ignores_mean_std_and_names_bad_normalization() -> None:
    images = np.random.default_rng(1).integers(0, 256, size=(2, 16, 16, 1), dtype=np.uint8)
    out = preprocess(images, input_size=None, normalization="histeq", mean=(9.0,) * 3, std=(9.0,) * 3)
    assert float(out.max()) == pytest.approx(255.0) and float(out.min()) >= 0.0
    with pytest.raises(DataError, match="Unknown normalization 'zscore'"):
        preprocess(images, input_size=None, normalization="zscore")


def test_normalize_follows_the_contract() -> None:
    from medtransfer.data.transforms import histogram_equalize, normalize

    x = torch.rand(2, 3, 8, 8)
    out = normalize(x, mean=(0.5,) * 3, std=(0.25,) * 3, normalization="meanstd")
    torch.testing.assert_close(out, (x - 0.5) / 0.25)
    assert normalize(x, mean=(0.5,) * 3, std=(0.25,) * 3, normalization="none") is x
    torch.testing.assert_close(normalize(x, mean=(0.0,) * 3, std=(1.0,) * 3, normalization="histeq"),
                               histogram_equalize(x))
