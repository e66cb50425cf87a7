"""Tests of the procedural phantoms: determinism per index, labels that agree with masks, cards, registry."""

from __future__ import annotations

import re

import numpy as np
import pytest

from medtransfer.data.base import DATASETS
from medtransfer.data.phantoms import (
    DEFAULT_N,
    MASK_LABELS,
    PhantomConfig,
    PhantomDataset,
    draw_labels,
    generate,
)
from medtransfer.data.sources import load
from medtransfer.errors import ConfigError, DataError, UnknownNameError

TASKS = ("binary", "organ", "grade")
NAMES_2D = [f"phantom-{t}{s}" for t in TASKS for s in ("", "-28", "-32", "-64", "-128")]
NAMES_3D = [f"phantom3d-{t}{s}" for t in TASKS for s in ("", "-28", "-32", "-64")]
SMALL = PhantomConfig(size=32)


def _render(task: str, n: int, cfg: PhantomConfig = SMALL, **kw: object) -> tuple[np.ndarray, ...]:
    args = {"split": "train", "seed": 0, **kw}
    return generate(np.arange(n), cfg, task=task, **args)  # type: ignore[arg-type]


# --- determinism ----------------------------------------------------------------------------------

def test_same_seed_gives_identical_arrays_across_datasets() -> None:
    a, b = load("phantom-organ-32", "val", n=12, seed=3), load("phantom-organ-32", "val", n=12, seed=3)
    idx = np.arange(12)
    np.testing.assert_array_equal(a.images(idx), b.images(idx))
    np.testing.assert_array_equal(a.masks(idx), b.masks(idx))
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.fingerprint == b.fingerprint


@pytest.mark.parametrize("cfg", [PhantomConfig(size=32), PhantomConfig(dims=3, size=16)], ids=["2d", "3d"])
def test_any_subset_renders_to_the_rows_of_the_full_render(cfg: PhantomConfig,
                                                           rng: np.random.Generator) -> None:
    full = generate(np.arange(10), cfg, task="grade", split="test", seed=1)
    for idx in (np.array([5, 3]), rng.permutation(10)[:4], np.array([9])):
        sub = generate(idx, cfg, task="grade", split="test", seed=1)
        for whole, part in zip(full, sub, strict=True):
            np.testing.assert_array_equal(whole[idx], part)


def test_subsets_match_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    import medtransfer.data.phantoms as phantoms

    full = _render("binary", 9)
    monkeypatch.setattr(phantoms, "_CHUNK_PIXELS", 2 * 32 * 32)  # two images per chunk
    np.testing.assert_array_equal(_render("binary", 9)[0], full[0])


@pytest.mark.parametrize("change", [{"seed": 1}, {"split": "val"}, {"split": "test"}])
def test_other_seeds_and_splits_give_other_images(change: dict[str, object]) -> None:
    base = _render("binary", 8)[0]
    other = _render("binary", 8, **change)[0]
    assert not any(np.array_equal(x, y) for x in base for y in other)


def test_tasks_have_their_own_random_streams() -> None:
    assert not np.array_equal(_render("binary", 4)[0], _render("organ", 4)[0])


def test_labels_are_drawn_without_rendering_and_agree_with_generate() -> None:
    labels = _render("organ", 50)[2]
    np.testing.assert_array_equal(draw_labels(np.arange(50), task="organ", split="train", seed=0), labels)
    # Labels depend on (seed, task, split, i) only: not on the look of the images.
    other = _render("organ", 50, PhantomConfig(size=28, lesion_contrast=0.3))
    np.testing.assert_array_equal(other[2], labels)


# --- labels agree with masks ----------------------------------------------------------------------

def test_binary_lesion_pixels_present_iff_label_is_one() -> None:
    _, masks, labels = _render("binary", 200)
    has_lesion = (masks == 5).reshape(len(masks), -1).any(1)
    np.testing.assert_array_equal(has_lesion, labels == 1)


def test_organ_label_is_the_organ_around_the_lesion() -> None:
    _, masks, labels = _render("organ", 60, PhantomConfig(size=64))
    for mask, label in zip(masks, labels, strict=True):
        lesion = mask == 5
        ring = np.zeros_like(lesion)
        for axis in (0, 1):
            for shift in (-1, 1):
                ring |= np.roll(lesion, shift, axis)
        around = mask[ring & ~lesion]
        assert np.bincount(around, minlength=6).argmax() == 2 + label  # 2/3/4 = left/right/central


def test_grade_lesion_area_increases_with_grade() -> None:
    _, masks, labels = _render("grade", 400)
    area = (masks == 5).reshape(len(masks), -1).sum(1)
    means = [area[labels == g].mean() for g in range(4)]
    assert all(a < b for a, b in zip(means[:-1], means[1:], strict=True)), means


@pytest.mark.parametrize(("task", "k"), [("binary", 2), ("organ", 3), ("grade", 4)])
def test_classes_are_balanced(task: str, k: int) -> None:
    labels = draw_labels(np.arange(3000), task=task, split="train", seed=0)
    np.testing.assert_allclose(np.bincount(labels, minlength=k) / len(labels), 1 / k, atol=0.04)


def test_masks_hold_body_and_three_organs() -> None:
    _, masks, _ = _render("organ", 20, PhantomConfig(size=64))
    for mask in masks:
        assert set(np.unique(mask)) == set(range(len(MASK_LABELS)))


def test_lesion_polarity_sets_the_sign_of_the_contrast() -> None:
    for polarity, sign in (("bright", 1), ("dark", -1)):
        cfg = PhantomConfig(size=64, lesion_polarity=polarity, lesion_contrast=0.2)
        images, masks, labels = _render("organ", 30, cfg)
        organ = masks == (2 + labels)[:, None, None]
        pixels = images[..., 0].astype(float)
        diffs = [img[m == 5].mean() - img[o].mean() for img, m, o in zip(pixels, masks, organ, strict=True)]
        assert np.mean(np.sign(diffs) == sign) >= 0.9


# --- datasets, cards, registry --------------------------------------------------------------------

SEG_2D = [f"phantom-seg-{t}{s}" for t in ("organs", "lesion") for s in ("", "-28", "-32", "-64", "-128")]
SEG_3D = [f"phantom3d-seg-{t}{s}" for t in ("organs", "lesion") for s in ("", "-28", "-32", "-64")]


def test_registry_holds_every_phantom_name() -> None:
    assert set(DATASETS.names("phantom*")) == set(NAMES_2D + NAMES_3D + SEG_2D + SEG_3D)


@pytest.mark.parametrize("name", ["phantom-seg-organs-32", "phantom3d-seg-organs-28"])
def test_segmentation_phantoms_map_the_rendered_masks(name: str) -> None:
    # the same scenes as the 'organ' task: organs 2, 3, 4 -> 1, 2, 3; the lesion (5) joins its host organ
    seg = load(name, "train", n=6)
    raw = load(name.replace("-seg-organs", "-organ"), "train", n=6)
    images, masks = seg.pairs(np.arange(6))
    raw_images, raw_masks = raw.pairs(np.arange(6))
    np.testing.assert_array_equal(images, raw_images)
    host = raw.labels.reshape((-1,) + (1,) * (raw_masks.ndim - 1))
    expected = np.where(raw_masks == 5, host + 1, np.where(raw_masks >= 2, raw_masks.astype(int) - 1, 0))
    np.testing.assert_array_equal(masks, expected)
    assert seg.card.task == "segmentation" and seg.card.label_names[0] == "background"
    lesion = load(name.replace("organs", "lesion"), "train", n=6)
    np.testing.assert_array_equal(lesion.masks(np.arange(6)), (raw_masks == 5).astype(int))
    assert (raw_masks == 5).any(axis=tuple(range(1, raw_masks.ndim))).all()  # a lesion in every image


@pytest.mark.parametrize("name", NAMES_2D + NAMES_3D)
def test_every_registered_phantom_renders_its_card(name: str) -> None:
    ds = load(name, "train", n=2)
    card = ds.card
    spatial = (card.image_size,) * card.dims
    images, masks = ds.images(np.arange(2)), ds.masks(np.array([1]))
    assert images.shape == (2, *spatial, 1) and images.dtype == np.uint8
    assert masks.shape == (1, *spatial) and masks.dtype == np.uint8
    assert ds.labels.shape == (2,) and ds.labels.dtype == np.int64
    assert card.has_masks and card.channels == 1 and card.default_metric == "accuracy"
    assert card.license == "CC0-1.0 (generated)" and card.source == "generated by medtransfer"
    assert ("qw_kappa" in card.metrics) == name.startswith(("phantom-grade", "phantom3d-grade"))
    assert card.dims == (3 if name.startswith("phantom3d") else 2)


def test_default_sizes_and_split_sizes() -> None:
    assert DATASETS.get("phantom-binary").card.image_size == 64
    assert DATASETS.get("phantom3d-binary").card.image_size == 32
    for name, dims in (("phantom-grade-28", 2), ("phantom3d-grade-28", 3)):
        for split in ("train", "val", "test"):
            assert len(load(name, split)) == DEFAULT_N[dims][split]
    assert (DEFAULT_N[2], DEFAULT_N[3]) == ({"train": 2000, "val": 500, "test": 1000},
                                            {"train": 400, "val": 100, "test": 200})


def test_card_task_types_and_label_names() -> None:
    cards = {t: DATASETS.get(f"phantom-{t}").card for t in ("binary", "organ", "grade")}
    assert cards["binary"].task == "binary" and cards["binary"].label_names == ("no-lesion", "lesion")
    assert cards["organ"].task == "multi-class" and cards["organ"].label_names == ("left", "right", "central")
    assert cards["grade"].task == "ordinal" and cards["grade"].num_classes == 4


def test_loader_passes_config_overrides() -> None:
    ds = load("phantom-binary-32", "val", n=4, lesion_contrast=0.1, noise_sigma=[0.0, 0.01], data_root="/x")
    assert isinstance(ds, PhantomDataset)
    assert ds.cfg.lesion_contrast == (0.1, 0.1) and ds.cfg.noise_sigma == (0.0, 0.01)


def test_loader_rejects_unknown_and_fixed_options() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'lesion_contrast'"):
        load("phantom-binary", "val", n=4, lesion_contrst=0.1)
    with pytest.raises(ConfigError, match="'size' of dataset 'phantom-binary' is fixed by its name"):
        load("phantom-binary", "val", n=4, size=128)
    with pytest.raises(ConfigError, match="'n' option of dataset 'phantom-binary' must be a positive int"):
        load("phantom-binary", "val", n=0)


def test_fingerprint_changes_with_seed_task_n_and_config() -> None:
    def fp(name: str = "phantom-binary-32", **kw: object) -> str:
        return load(name, "train", **{"n": 10, "seed": 0, **kw}).fingerprint  # type: ignore[arg-type]

    prints = [fp(), fp(seed=1), fp("phantom-organ-32"), fp(n=11), fp(lesion_contrast=0.1), fp(rotate=False),
              fp("phantom-binary-64")]
    assert len(set(prints)) == len(prints)
    assert fp() == fp()
    assert load("phantom-binary-32", "val", n=10).fingerprint != fp()


def test_out_of_range_and_bad_indices_raise() -> None:
    ds = load("phantom-binary-32", "val", n=5)
    with pytest.raises(DataError, match="out of range"):
        ds.images(np.array([5]))
    with pytest.raises(DataError, match="non-negative ints"):
        ds.images(np.array([-1]))
    with pytest.raises(DataError, match="non-negative ints"):
        generate(np.array([0.5]), SMALL, task="binary", split="val", seed=0)


def test_generate_rejects_unknown_task_split_and_seed() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'binary'"):
        generate(np.arange(2), SMALL, task="binar", split="val", seed=0)
    with pytest.raises(ConfigError, match="Unknown phantom split 'valid'"):
        generate(np.arange(2), SMALL, task="binary", split="valid", seed=0)
    with pytest.raises(ConfigError, match="seed must be a non-negative int. Got -1"):
        draw_labels(np.arange(2), task="binary", split="val", seed=-1)


# --- config validation ----------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"size": 8}, re.escape("The 'size' parameter of PhantomConfig must be an int in the range [16, 256]. "
                            "Got 8 instead.")),
    ({"size": 32.0}, r"'size' parameter .* Got 32.0 instead"),
    ({"dims": 4}, r"The 'dims' parameter of PhantomConfig must be 2 or 3. Got 4 instead."),
    ({"scale": (1.3, 1.2)}, r"'scale' parameter of PhantomConfig must be a pair \(low, high\) with 0.5 <="),
    ({"lesion_radius": (0.5, 0.9)}, r"'lesion_radius' .* high <= 0.85. Got \(0.5, 0.9\) instead."),
    ({"lesion_contrast": 2.0}, r"'lesion_contrast' .* Got \(2.0, 2.0\) instead."),
    ({"noise_sigma": 0.1}, r"'noise_sigma' parameter .* must be a pair"),
    ({"lesion_polarity": "up"}, r"'lesion_polarity' .* one of \['both', 'bright', 'dark'\]. Got 'up'"),
    ({"rotate": "yes"}, r"'rotate' parameter of PhantomConfig must be a bool. Got 'yes' instead."),
    ({"translation": -0.1}, r"'translation' parameter .* a float in the range \[0, 0.25\]. Got -0.1 "),
    ({"shape_jitter": 0.3}, r"'shape_jitter' parameter .* \[0, 0.15\]. Got 0.3 instead."),
])
def test_config_validation_names_parameter_range_and_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PhantomConfig(**kwargs)  # type: ignore[arg-type]


def test_config_normalises_ranges_to_float_tuples() -> None:
    cfg = PhantomConfig(lesion_contrast=0.1, scale=[1, 1])  # type: ignore[arg-type]
    assert cfg.lesion_contrast == (0.1, 0.1) and cfg.scale == (1.0, 1.0)
    assert cfg == PhantomConfig(lesion_contrast=(0.1, 0.1), scale=(1.0, 1.0))


def test_a_second_view_is_the_same_scene_under_other_noise() -> None:
    from medtransfer import data

    a = data.load("phantom-organ-32", "test", n=4)
    b = data.load("phantom-organ-32", "test", n=4, view=1)
    ia, ma = a.pairs(np.arange(4))
    ib, mb = b.pairs(np.arange(4))
    np.testing.assert_array_equal(ma, mb)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(ia, ib) and np.abs(ia.astype(int) - ib.astype(int)).mean() < 20
    assert a.fingerprint != b.fingerprint
    np.testing.assert_array_equal(data.load("phantom-organ-32", "test", n=4, view=0).images(np.arange(4)), ia)
    with pytest.raises(ConfigError, match="'view'"):
        data.sources.check_options("phantom-organ-32", {"view": -1})
