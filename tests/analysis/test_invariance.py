from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import torch
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis
from torch import nn

from medtransfer import data, models
from medtransfer.analysis import invariance as inv
from medtransfer.errors import ConfigError, DataError

from .conftest import carded


def test_whitened_cosine_and_mahalanobis_equal_scipy(rng: np.random.Generator) -> None:
    feats = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    w = inv.Whitening.fit(feats)
    a, b = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    cov = np.cov(feats, rowvar=False) + 1e-6 * np.eye(6)
    vi = scipy.linalg.inv(cov)
    chol = scipy.linalg.cholesky(vi, lower=True)
    mu = feats.mean(axis=0)
    za, zb = (mu - a) @ chol, (mu - b) @ chol
    expected_cos = [1 - scipy.spatial.distance.cosine(u, v) for u, v in zip(za, zb, strict=True)]
    np.testing.assert_allclose(inv.whitened_cosine(a, b, w), expected_cos, rtol=1e-9)
    expected_mah = [scipy_mahalanobis(u, v, vi) for u, v in zip(a, b, strict=True)]
    np.testing.assert_allclose(inv.mahalanobis(a, b, w), expected_mah,
                               rtol=1e-9)
    np.testing.assert_allclose(inv.whitened_cosine(a, a, w), 1.0)
    np.testing.assert_allclose(inv.mahalanobis(a, a, w), 0.0, atol=1e-12)


def test_covariance_sample_rule_and_the_warning(rng: np.random.Generator) -> None:
    assert inv.Whitening.fit(rng.normal(size=(999, 3))).n == 999
    assert inv.Whitening.fit(rng.normal(size=(1000, 3))).n == 1000
    assert inv.Whitening.fit(rng.normal(size=(20000, 3))).n == 2000  # max(1000, 10% of N), with replacement
    with pytest.warns(UserWarning, match="Use at least 11 images"):
        inv.Whitening.fit(rng.normal(size=(8, 10)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inv.Whitening.fit(rng.normal(size=(11, 10)))
    with pytest.raises(DataError, match="at least 2 images"):
        inv.Whitening.fit(np.ones((1, 3)))


def test_settings_follow_the_reference_grids() -> None:
    rot = inv.settings_of("rotation")
    assert len(rot) == 256 and rot[0] == 0.0 and rot[64] == 90.0
    assert inv.settings_of("rotation", 20)[1] == 18.0  # the paper's k=20
    assert len(inv.settings_of("translation")) == 256
    assert inv.settings_of("translation")[0] == (-0.0625, -0.0625)  # ±16 px of 256
    for name in ("translation", "shear"):  # ssl-invariances' grids hold the identity (its `original_idx`)
        assert (0.0, 0.0) in inv.settings_of(name) and (0.0, 0.0) in inv.settings_of(name, 8)
    assert len(inv.settings_of("translation", 8)) == 4  # int(sqrt(8)) = 2 points per axis
    crops = inv.settings_of("resized_crop")
    assert len(crops) == 256 and crops[0] == (0.0, 0.0, 0.75, 0.75)
    assert inv.settings_of("posterize") == [1, 2, 3, 4, 5, 6, 7]
    for name in ("h_flip", "v_flip", "grayscale", "invert", "equalize"):
        assert inv.settings_of(name) == [False, True]
    assert [s for s, _ in inv.settings_of("deform")] == pytest.approx(list(np.linspace(10, 50, 8)))
    assert inv.settings_of("blur", 3) == pytest.approx([1e-5, 10.000005, 20.0])


def test_transforms_keep_shape_and_dtype_in_2d_and_3d(rng: np.random.Generator) -> None:
    images = rng.integers(0, 256, (3, 24, 24, 1), dtype=np.uint8)
    volumes = rng.integers(0, 256, (2, 4, 24, 24, 1), dtype=np.uint8)
    for name in inv.transform_names():
        for setting in inv.settings_of(name, 3):
            out = inv.apply(name, images, setting)
            assert out.shape == images.shape and out.dtype == np.uint8, name
        out3 = inv.apply(name, volumes, inv.settings_of(name, 3)[-1])
        assert out3.shape == volumes.shape, name
    np.testing.assert_array_equal(inv.apply("h_flip", images, True), images[:, :, ::-1])
    np.testing.assert_array_equal(inv.apply("invert", images, True), 255 - images)
    np.testing.assert_array_equal(inv.apply("rotation", images, 0.0), images)
    np.testing.assert_array_equal(inv.apply("v_flip", volumes, True), volumes[:, :, ::-1])  # per slice: H flips
    g = np.linspace(0, 255, 64)
    smooth = (np.add.outer(g, g) / 2).astype(np.uint8)[None, :, :, None]  # 2 grey levels per pixel of shift
    for setting in inv.settings_of("deform"):
        moved = np.abs(inv.apply("deform", smooth, setting).astype(int) - smooth).mean()
        assert 2 < moved < 30  # a visible warp of a few pixels, not the identity
    with pytest.raises(DataError, match="uint8"):
        inv.apply("h_flip", images.astype(np.float32), True)


def test_a_pooled_model_is_flip_invariant_and_not_invert_invariant() -> None:
    """Global average pooling of a pixel-wise map is exactly invariant to flips; inversion changes it."""
    net = carded(nn.Sequential(nn.Conv2d(1, 4, 1), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 4)
    ds = data.load("phantom-binary-32", "train", n=64)
    stats = inv.Whitening.fit(inv._features(net, ds.images(np.arange(64)), net.card.input, 32,
                                            torch.device("cpu")))
    flip = inv.invariance(net, ds, "h_flip", stats, n_images=10)
    # equal up to float32 rounding: the flipped copy's memory layout may take another summation order
    assert flip.cosine == pytest.approx([1.0, 1.0], abs=1e-6)
    assert flip.mahalanobis == pytest.approx([0.0, 0.0], abs=1e-3)
    invert = inv.invariance(net, ds, "invert", stats, n_images=10)
    assert invert.cosine[0] == pytest.approx(1.0) and invert.cosine[1] < 0.9
    assert invert.mean_cosine == pytest.approx(invert.cosine.mean())
    both = inv.invariances(net, ds, ["h_flip", "rotation"], stats, n_images=4, k=4)
    assert list(both) == ["h_flip", "rotation"] and both["rotation"].n_images == 4


def test_multiview_pairs_row_for_row() -> None:
    net = models.create("small-cnn")
    a = data.load("phantom-binary-32", "test", n=12)
    stats = inv.Whitening.fit(np.random.default_rng(0).normal(size=(200, net.card.feature_dim)))
    same = inv.multiview_invariance(net, a, a, stats, n_images=5)
    assert same.cosine[0] == pytest.approx(1.0) and same.mahalanobis[0] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(DataError, match="pair row for row"):
        inv.multiview_invariance(net, a, data.load("phantom-binary-32", "test", n=5), stats)


def test_bad_arguments_are_named() -> None:
    net = models.create("small-cnn")
    ds = data.load("phantom-binary-32", "test", n=4)
    stats = inv.Whitening.fit(np.random.default_rng(0).normal(size=(50, 3)))
    with pytest.raises(ConfigError, match="Unknown transform 'rotaton'.*Did you mean 'rotation'"):
        inv.invariance(net, ds, "rotaton", stats)
    with pytest.raises(ConfigError, match="'k' of transform"):
        inv.settings_of("rotation", 0)
    with pytest.raises(ConfigError, match="n_images"):
        inv.invariance(net, ds, "rotation", stats, n_images=0)
    with pytest.raises(ConfigError, match="fit them on this model"):
        inv.invariance(net, ds, "h_flip", stats, n_images=2)
    with pytest.raises(ConfigError, match="Unknown transform"):
        inv.invariances(net, ds, ["h_flip", "nope"], stats)
