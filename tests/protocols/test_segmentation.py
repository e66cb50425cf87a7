"""The segment protocol: trains and learns, resumes after a kill, freezes, refuses what it cannot do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from medtransfer import _lightning, data, models
from medtransfer.data.base import ImageDataset
from medtransfer.errors import ConfigError, DataError, TrainingError
from medtransfer.protocols.segmentation import Segmenter, resolve_config, segment

FAST = {"n_boot": 20, "progress": False}


@pytest.fixture(scope="module")
def splits() -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    return tuple(data.load("phantom-seg-organs-28", s, n=n)  # type: ignore[return-value]
                 for s, n in (("train", 64), ("val", 16), ("test", 24)))


class _Killed(Exception):
    pass


class _Kill(pl.Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if trainer.global_step == self.at:
            raise _Killed


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("loss", ["dice_bce", "weighted_dice"])
def test_learns_the_organs_far_above_chance(splits: tuple, loss: str) -> None:
    # small-cnn from random init, 10 epochs of 64 phantoms (0.66 Dice here with dice_bce): the organs have distinct
    # intensities, so even this short run segments them; a constant background prediction would score Dice 0
    r = segment(models.create("small-cnn"), *splits, epochs=10, batch_size=8, loss=loss, **FAST)
    assert r.protocol == "segment" and r.n_train == 64 and r.n_test == 24
    assert r.metrics["dice"] > 0.4, r.metrics
    assert set(r.metrics) == {"dice", "iou", *(f"{m}/{c}" for m in ("dice", "iou")
                                                for c in ("left organ", "right organ", "central organ"))}
    for name, (lo, hi) in r.ci.items():
        assert lo <= r.metrics[name] <= hi
    assert r.chosen["unet"] == "StageUNet" and r.chosen["best_step"] is not None


def test_resume_after_kill_ends_like_an_uninterrupted_run(splits: tuple, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_lightning, "CHECKPOINT_EVERY_S", 0.0)  # a checkpoint after every validation
    net = models.create("test-cnn")
    kw = dict(steps=12, val_every=4, batch_size=8, augment="flip", **FAST)
    whole = Segmenter(**kw).fit(net, splits[0], splits[1])
    ckpt = tmp_path / "cell"
    with pytest.raises(_Killed):
        Segmenter(checkpoint_dir=ckpt, callbacks=[_Kill(8)], **kw).fit(net, splits[0], splits[1])
    assert torch.load(ckpt / "last.ckpt", weights_only=False)["global_step"] == 8
    resumed = Segmenter(checkpoint_dir=ckpt, **kw).fit(net, splits[0], splits[1])
    assert resumed.history_ == whole.history_ and resumed.chosen_ == whole.chosen_
    assert _same(resumed.module_.state_dict(), whole.module_.state_dict())
    assert not ckpt.exists()
    with pytest.raises(_Killed):
        Segmenter(checkpoint_dir=ckpt, callbacks=[_Kill(4)], **kw).fit(net, splits[0], splits[1])
    with pytest.raises(TrainingError, match="another segmentation run"):
        Segmenter(checkpoint_dir=ckpt, **(kw | {"lr": 0.5})).fit(net, splits[0], splits[1])


def test_a_frozen_encoder_keeps_the_backbone_weights(splits: tuple) -> None:
    net = models.create("test-cnn")
    seg = Segmenter(encoder="frozen", steps=6, batch_size=8, **FAST).fit(net, splits[0], splits[1])
    unet = seg.module_.net
    for (name, before), after in zip(net.state_dict().items(), unet.encoder.state_dict().values(), strict=True):
        assert torch.equal(before, after), name  # weights and BatchNorm statistics alike
    trained = Segmenter(steps=6, batch_size=8, **FAST).fit(net, splits[0], splits[1])
    assert not _same(dict(zip(net.state_dict(), trained.module_.net.encoder.state_dict().values(), strict=True)),
                     net.state_dict())
    warm = Segmenter(warmup_epochs=1, epochs=1, batch_size=8, **FAST).fit(net, splits[0], splits[1])
    for before, after in zip(net.state_dict().values(), warm.module_.net.encoder.state_dict().values(), strict=True):
        assert torch.equal(before, after)  # one epoch, all of it warm-up: the encoder has not moved yet


def test_the_best_validation_weights_are_scored(splits: tuple) -> None:
    seg = Segmenter(steps=12, val_every=3, batch_size=8, lr=0.05, patience=None, **FAST).fit(
        models.create("test-cnn"), splits[0], splits[1])
    losses = [h["val_loss"] for h in seg.history_]
    assert len(losses) == 4 and seg.chosen_["val_loss"] == min(losses)
    assert seg.chosen_["best_step"] == seg.history_[int(np.argmin(losses))]["step"]


def test_volumes_with_a_3d_encoder() -> None:
    sp = [data.load("phantom3d-seg-lesion-28", s, n=n) for s, n in (("train", 6), ("val", 2), ("test", 3))]
    seg = Segmenter("taleb2020", epochs=2, warmup_epochs=1, **FAST).fit(models.create("test-cnn3d"), sp[0], sp[1])
    r = seg.score(sp[2])
    assert set(r.metrics) == {"dice", "iou", "dice/lesion", "iou/lesion"} and r.chosen["unet"] == "StageUNet"
    assert [p.shape for p in seg.predict(sp[2])] == [(28, 28, 28)] * 3 and r.chosen["loss"] == "weighted_dice"


def test_bad_input_is_named(splits: tuple) -> None:
    vols = data.load("phantom3d-seg-lesion-28", "train", n=4)
    with pytest.raises(ConfigError, match=r"'test-cnn' is a 2D model and 'phantom3d-seg-lesion-28' holds 3D volumes"):
        Segmenter(steps=1, **FAST).fit(models.create("test-cnn"), vols)
    cls = data.load("phantom-binary-28", "train", n=8)
    with pytest.raises(DataError, match="is a binary dataset without segmentation masks; segment needs a segmentation"):
        Segmenter(steps=1, **FAST).fit(models.create("test-cnn"), cls)
    with pytest.raises(ConfigError, match="Unknown segment preset 'hoseinzadeh2021'. Did you mean 'hosseinzadeh2021'"):
        resolve_config("hoseinzadeh2021")
    with pytest.raises(ConfigError, match=r"'loss' parameter of SegmentConfig must be one of .* Got 'dise'.*'dice'"):
        resolve_config(loss="dise")
    with pytest.raises(ConfigError, match="not fitted"):
        Segmenter().predict(splits[2])


def test_presets() -> None:
    drive = resolve_config("hosseinzadeh2021", dataset="drive")
    assert (drive.size, drive.loss, drive.batch_size, drive.patience) == (512, "bce", 32, 20)
    assert (resolve_config("hosseinzadeh2021", dataset="montgomery-lungs").size, resolve_config(
        "hosseinzadeh2021").loss) == (224, "dice")
    taleb = resolve_config("taleb2020")
    assert (taleb.loss, taleb.warmup_epochs, taleb.batch_size) == ("weighted_dice", 25, 2)
    assert resolve_config("taleb2020", epochs=3).epochs == 3


def test_predict_returns_masks_at_the_stored_size(tmp_path: Path) -> None:
    from PIL import Image

    for i in range(8):  # images of 20x24 px with a bright square to segment
        img, mask = np.zeros((20, 24), np.uint8), np.zeros((20, 24), np.uint8)
        img[4 + i % 4:12 + i % 4, 5:13], mask[4 + i % 4:12 + i % 4, 5:13] = 220, 255
        for sub, arr in (("images", img), ("masks", mask)):
            (tmp_path / sub).mkdir(exist_ok=True)
            Image.fromarray(arr).save(tmp_path / sub / f"{i}.png")
    sp = [data.load(str(tmp_path), s) for s in ("train", "val", "test")]
    seg = Segmenter(size=32, steps=4, batch_size=4, **FAST).fit(models.create("test-cnn"), sp[0], sp[1])
    pred = seg.predict(sp[2])
    assert [p.shape for p in pred] == [(20, 24)] * len(sp[2])  # trained at 32 px, predicted at the stored size


def test_a_3d_model_folder_is_a_u_net_encoder(tmp_path: Path) -> None:
    # what `medtransfer pretrain rotation --dims 3` writes: a model folder of a 3D encoder
    from medtransfer.models.local import save_model_dir

    folder = save_model_dir(tmp_path / "rot3d", models.create("unet-encoder-3d"), models.MODELS.get("unet-encoder-3d"))
    net = models.create(str(folder))
    sp = [data.load("phantom3d-seg-organs-28", s, n=n) for s, n in (("train", 4), ("val", 2), ("test", 2))]
    seg = Segmenter(steps=1, batch_size=2, **FAST).fit(net, sp[0], sp[1])
    encoder = dict(seg.module_.net.encoder.named_parameters())
    assert len(encoder) == len(list(net.parameters())) and seg.chosen_["unet"] == "StageUNet"
