from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn

from medtransfer import data, models
from medtransfer.analysis import saliency as sal
from medtransfer.errors import ConfigError, DataError

from .conftest import RegionSum, carded


def brute_force(model: nn.Module, x: torch.Tensor, window: int, baseline: float = 0.0) -> np.ndarray:
    """The reference's way: one occluded copy at a time, its score added under the window, then / window**dims."""
    spatial = x.shape[1:]
    out = np.zeros(spatial)
    with torch.no_grad():
        f0 = model(x[None]).double()[0]
        for start in np.ndindex(*[s - window + 1 for s in spatial]):
            occ = x.clone()
            region = tuple(slice(s, s + window) for s in start)
            occ[(slice(None), *region)] = baseline
            score = float((model(occ[None]).double()[0] - f0).norm() / f0.norm())
            out[region] += score
    return out / window ** len(spatial)


def test_saliency_only_where_the_features_look() -> None:
    model = RegionSum((slice(4, 7), slice(10, 13)))
    x = torch.rand(2, 1, 16, 20) + 0.5
    maps = sal.occlusion_map(model, x, window=3, batch_size=17)
    assert maps.shape == (2, 16, 20)
    reach = np.zeros((16, 20), dtype=bool)
    reach[2:9, 8:15] = True  # pixels of some 3x3 window that overlaps the region
    assert np.all(maps[:, ~reach] == 0)
    assert np.all(maps[:, 4:7, 10:13] > 0)
    for m, xi in zip(maps, x, strict=True):
        np.testing.assert_allclose(m, brute_force(model, xi, 3), rtol=1e-10, atol=1e-12)


def test_hand_worked_scores_of_a_one_pixel_model() -> None:
    # f = (x[0,0], 1): occluding pixel (0,0) with 0 moves f by x00; ||f|| = sqrt(x00^2 + 1)
    model = RegionSum((slice(0, 1), slice(0, 1)))
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0] = 2.0
    m = sal.occlusion_map(model, x, window=2)[0]
    s = 2.0 / np.sqrt(5.0)
    expected = np.zeros((3, 3))
    expected[0:2, 0:2] = s / 4  # only the window at (0, 0) covers the pixel
    np.testing.assert_allclose(m, expected, rtol=1e-12)


def test_batch_size_does_not_change_the_map() -> None:
    torch.manual_seed(0)
    net = carded(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 4)
    x = torch.randn(1, 1, 12, 12)
    a = sal.occlusion_map(net, x, window=4, batch_size=1)
    b = sal.occlusion_map(net, x, window=4, batch_size=1000)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(a[0], brute_force(net, x[0], 4), rtol=1e-5, atol=1e-9)


def test_volumes_get_cubic_windows() -> None:
    model = RegionSum((slice(2, 3), slice(2, 3), slice(5, 6)), dims=3)
    x = torch.rand(1, 1, 6, 6, 8) + 0.5
    m = sal.occlusion_map(model, x, window=2)
    assert m.shape == (1, 6, 6, 8)
    np.testing.assert_allclose(m[0], brute_force(model, x[0], 2), rtol=1e-10)
    # the 2x2x2 windows that contain voxel (2, 2, 5) together cover the 3x3x3 block around it, and nothing else
    assert np.count_nonzero(m) == 27 and np.all(m[0, 1:4, 1:4, 4:7] > 0)


def test_stride_interpolates_and_keeps_the_last_position() -> None:
    assert sal.positions(10, 3, 3).tolist() == [0, 3, 6, 7]
    assert sal.positions(10, 3, 1).tolist() == list(range(8))
    torch.manual_seed(0)
    net = carded(nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 8)
    x = torch.randn(1, 1, 24, 24)
    exact = sal.occlusion_map(net, x, window=6, stride=1)[0]
    coarse = sal.occlusion_map(net, x, window=6, stride=2)[0]
    assert coarse.shape == exact.shape
    assert np.corrcoef(exact.ravel(), coarse.ravel())[0, 1] > 0.95
    assert sal.top_iou(exact, coarse) > 0.5


def test_attentive_diffusion_and_pointing_by_hand() -> None:
    m = np.array([[0.0, 0.0], [0.0, 4.0]])
    assert sal.attentive_diffusion(m) == 25.0  # one of four pixels above the mean 1
    assert sal.attentive_diffusion(np.ones((4, 4))) == 0.0
    for v in (0.1, 0.3, 0.7):  # a flat map's mean may round a bit below its value: still no pixel above it
        assert sal.attentive_diffusion(np.full((224, 224), v)) == 0.0
    region = np.array([[False, True], [False, True]])
    assert sal.pointing_score(np.array([[1.0, 1.0], [0.0, 2.0]]), region) == 0.75
    with pytest.raises(DataError, match="resize the mask"):
        sal.pointing_score(m, np.ones((3, 3), bool))


def test_top_iou_breaks_ties_by_index() -> None:
    a = np.zeros(20)
    a[:4] = 1.0
    assert sal.top_iou(a, a.copy(), share=0.1) == 1.0  # two of four tied pixels, the same two both times
    b = np.arange(20.0)
    assert sal.top_iou(b, -b, share=0.1) == 0.0


def test_bad_arguments_are_named() -> None:
    model = RegionSum((slice(0, 2), slice(0, 2)))
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ConfigError, match="larger than the image"):
        sal.occlusion_map(model, x, window=9)
    for bad in (0, 1.5, -2, True):
        with pytest.raises(ConfigError, match="'stride'.*positive int"):
            sal.occlusion_map(model, x, window=2, stride=bad)
    model3d = RegionSum((slice(0, 2),) * 3, dims=3)
    with pytest.raises(ConfigError, match="3D model cannot explain 2D"):
        sal.occlusion_map(model3d, x, window=2)
    with pytest.raises(DataError, match="shape"):
        sal.occlusion_map(types.SimpleNamespace(), torch.rand(8, 8), window=2)  # type: ignore[arg-type]
    zero = RegionSum((slice(0, 1), slice(0, 1)))
    zero.forward = lambda t: torch.zeros(len(t), 2)  # type: ignore[method-assign]
    with pytest.raises(DataError, match="all zero"):
        sal.occlusion_map(zero, x, window=2)


def test_dataset_convenience_with_masks_and_the_anton_preset() -> None:
    ds = data.load("phantom-organ-32", "test", n=3)
    model = models.create("small-cnn")
    r = sal.saliency(model, ds, [0, 2], window=4, stride=2)
    assert r.maps.shape == r.images.shape == (2, 32, 32)
    assert r.pointing is not None and np.all((r.pointing >= 0) & (r.pointing <= 1))  # every organ image has a lesion
    assert r.settings["window"] == 4 and r.diffusion.shape == (2,)
    anton = sal.saliency(model, ds, [1], preset="anton2022", stride=77)
    assert anton.maps.shape == (1, 224, 224) and anton.settings["input_size"] == 242
    assert anton.settings["window"] == 10 and anton.settings["crop"] == (9, 233)
    wide = sal.saliency(model, ds, [1], preset="anton2022", window=20, stride=111)
    assert wide.maps.shape == (1, 204, 204) and wide.settings["crop"] == (19, 223)  # the fully covered pixels
    with pytest.raises(DataError, match="rows of"):
        sal.saliency(model, ds, [3])
    with pytest.raises(ConfigError, match="preset"):
        sal.saliency(model, ds, [0], preset="anton")


def test_region_of_interest_for_segmentation_and_plain_data() -> None:
    seg = data.load("phantom-seg-lesion-32", "test", n=2)
    roi = sal.region_of_interest(seg, np.arange(2))
    assert roi is not None and roi.dtype == bool and roi.any()
    masks = data.load("phantom-organ-32", "test", n=2).masks(np.arange(2))
    np.testing.assert_array_equal(roi, masks == 5)  # the same images: the lesion of the 'organ' task
    plain = data.load("phantom-organ-32", "test", n=2)
    plain.card = type(plain.card)(**{**plain.card.__dict__, "has_masks": False})
    assert sal.region_of_interest(plain, np.arange(2)) is None


def test_a_task_trained_encoder_points_at_the_lesion() -> None:
    """Pointing game on phantoms: an encoder trained to tell lesion from no lesion puts clearly more of its
    occlusion saliency on the lesion than the same network at random init (and than the lesion's area share)."""
    from medtransfer.protocols.finetune import Finetuner

    splits = [data.load("phantom-binary-32", s, n=n) for s, n in (("train", 2000), ("val", 500))]
    ft = Finetuner("medmnist", epochs=15, batch_size=32, n_boot=0, progress=False).fit(
        models.create("small-cnn"), *splits)
    trained = ft.module_.backbone
    trained.card = models.create("small-cnn").card
    test = data.load("phantom-binary-32", "test", n=60)
    index = np.flatnonzero(test.labels == 1)[:30]  # images that hold a lesion
    scores = {name: sal.saliency(m, test, index, window=4).pointing
              for name, m in (("random", models.create("small-cnn")), ("trained", trained))}
    area = float(sal.region_of_interest(test, index).mean())
    assert np.nanmean(scores["trained"]) > 1.5 * np.nanmean(scores["random"])
    assert np.nanmean(scores["trained"]) > 1.2 * area
    assert np.mean(scores["trained"] > scores["random"]) > 0.6  # per image, most often
