"""Finetuning on tiny phantoms: presets, selection on validation only, restored best weights, resume, NaN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from medtransfer import _lightning, data, models
from medtransfer.data.base import ArrayDataset, DatasetCard, ImageDataset
from medtransfer.data.splits import label_subset
from medtransfer.errors import ConfigError, TrainingError, UnknownNameError
from medtransfer.models.factory import build
from medtransfer.protocols.base import ClassificationResult
from medtransfer.protocols.finetune import PRESETS, Finetuner, finetune, resolve_config

FAST = {"n_boot": 20, "progress": False}


@pytest.fixture(scope="module")
def splits() -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    return tuple(data.load("phantom-binary-32", s, n=n)  # type: ignore[return-value]
                 for s, n in (("train", 96), ("val", 48), ("test", 48)))


@pytest.fixture(scope="module")
def net() -> nn.Module:
    return models.create("test-cnn")


class _Snapshots(pl.Callback):
    """Spy: the module's weights after every validation, and the first step each fit started at."""

    def __init__(self) -> None:
        self.at: dict[int, dict[str, torch.Tensor]] = {}
        self.first_step: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.at[trainer.global_step] = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.first_step is None:
            self.first_step = trainer.global_step


class _Killed(Exception):
    """What the simulated kill raises (Lightning turns a KeyboardInterrupt into SystemExit)."""


class _Kill(pl.Callback):
    """Simulates a kill: raises when the trainer is about to run step `at`."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if trainer.global_step == self.at:
            raise _Killed(f"simulated kill before step {self.at}")


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_runs_a_few_steps(preset: str, splits: tuple, net: nn.Module) -> None:
    result = finetune(net, *splits, preset=preset, steps=4, batch_size=16, val_every=2, **FAST)
    assert isinstance(result, ClassificationResult) and result.protocol == "finetune"
    assert result.chosen["stopped_step"] == 4 and result.chosen["preset"] == preset
    assert set(result.metrics) == {"accuracy", "auc"} and all(0.0 <= v <= 1.0 for v in result.metrics.values())
    cfg = resolve_config(preset)
    assert (result.chosen["best_step"] is not None) == cfg.select_best  # validated iff the preset selects
    assert not torch.are_deterministic_algorithms_enabled()  # Lightning's process-wide flag is put back


def test_model_passed_in_is_not_changed_and_scratch_draws_the_builders_init(splits: tuple, net: nn.Module) -> None:
    before = {k: v.clone() for k, v in net.state_dict().items()}
    # one step, all of it warm-up (batch = the whole set): the encoder is frozen, so it ends as it started
    ft = Finetuner("taleb2020", init="scratch", seed=1, steps=1, warmup_epochs=1, batch_size=96,
                   **FAST).fit(net, splits[0])
    assert _same(before, net.state_dict())  # the caller's model is copied, never trained
    start = ft.module_.backbone.state_dict()
    assert _same(start, build(net.card.arch, net.card.input.in_chans, seed=1).state_dict())
    assert not _same(start, before)  # seed 1, not the card's init seed 0


def test_early_stopping_restores_the_best_weights_not_the_last(splits: tuple, net: nn.Module) -> None:
    spy = _Snapshots()
    ft = Finetuner("anton2022", early_stopping=True, patience=1, steps=40, val_every=2, batch_size=16, lr=0.05,
                   callbacks=[spy], **FAST).fit(net, splits[0])
    best, stopped = ft.chosen_["best_step"], ft.chosen_["stopped_step"]
    assert stopped < 40, "precondition: patience 1 stops before the end"
    assert best < stopped and best in spy.at and stopped in spy.at
    final = ft.module_.state_dict()
    assert _same(final, spy.at[best])  # the weights themselves, as they were at the best validation
    assert not _same(final, spy.at[stopped])  # ... not the live weights of the last step (the reference's bug)
    # no val split passed: trained on the stratified 80% of train, validated on the rest (Anton et al.)
    assert ft.n_train_ == len(label_subset(np.asarray(splits[0].labels), fraction=0.8, seed=0)) < len(splits[0])


def test_resume_after_kill_ends_like_an_uninterrupted_run(splits: tuple, net: nn.Module, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_lightning, "CHECKPOINT_EVERY_S", 0.0)  # a checkpoint after every validation
    kw = dict(steps=12, val_every=4, batch_size=16, lr=0.05, augment="rrc_flip", **FAST)
    whole = Finetuner("medmnist", **kw).fit(net, splits[0], splits[1])
    ckpt = tmp_path / "cell"
    with pytest.raises(_Killed):
        Finetuner("medmnist", checkpoint_dir=ckpt, callbacks=[_Kill(8)], **kw).fit(net, splits[0], splits[1])
    saved = torch.load(ckpt / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 8
    spy = _Snapshots()
    resumed = Finetuner("medmnist", checkpoint_dir=ckpt, callbacks=[spy], **kw).fit(net, splits[0], splits[1])
    assert spy.first_step == 8 and resumed.chosen_["stopped_step"] == 12
    assert resumed.history_ == whole.history_ and resumed.chosen_ == whole.chosen_
    assert _same(resumed.module_.state_dict(), whole.module_.state_dict())
    assert not ckpt.exists()  # a finished run removes its checkpoint


def test_resume_refuses_a_checkpoint_of_another_run(splits: tuple, net: nn.Module, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_lightning, "CHECKPOINT_EVERY_S", 0.0)
    kw = dict(steps=8, val_every=4, batch_size=16, **FAST)
    with pytest.raises(_Killed):
        Finetuner("medmnist", checkpoint_dir=tmp_path, callbacks=[_Kill(4)], **kw).fit(net, splits[0], splits[1])
    with pytest.raises(TrainingError, match="another finetuning run"):
        Finetuner("medmnist", checkpoint_dir=tmp_path, lr=0.5, **kw).fit(net, splits[0], splits[1])


class _SpyDataset(ArrayDataset):
    """A test split that logs every read, so a test can tell when (if ever) training looked at it."""

    def __init__(self, source: ImageDataset, labels: np.ndarray, log: list[str]) -> None:
        images = source.images(np.arange(len(source)))
        super().__init__(source.card, "test", images, labels, fingerprint="spy")
        self.events = log

    def images(self, index: np.ndarray) -> np.ndarray:
        self.events.append("test-read")
        return super().images(index)


class _FitEnd(pl.Callback):
    def __init__(self, log: list[str]) -> None:
        self.events = log

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.events.append("fit-end")


def test_test_split_never_reaches_model_selection(splits: tuple, net: nn.Module) -> None:
    train, val, test = splits
    runs = []
    for labels in (np.asarray(test.labels), 1 - np.asarray(test.labels)):  # true labels, then every one flipped
        log: list[str] = []
        spy = _SpyDataset(test, labels, log)
        runs.append(finetune(net, train, val, spy, steps=9, val_every=3, batch_size=16, lr=0.05,
                             callbacks=[_FitEnd(log)], **FAST))
        assert log[0] == "fit-end" and log.count("fit-end") == 1  # every test read comes after training
    clean, poisoned = runs
    assert clean.chosen == poisoned.chosen and clean.grid == poisoned.grid  # selection blind to test labels
    assert clean.metrics["accuracy"] == pytest.approx(1.0 - poisoned.metrics["accuracy"])


class _NaNNet(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.card = inner, inner.card

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * float("nan")


def test_nan_loss_stops_the_run_with_an_error_that_says_so(splits: tuple, net: nn.Module) -> None:
    with pytest.raises(TrainingError, match=r"step 0: the training loss is nan\. Lower the learning rate"):
        finetune(_NaNNet(net), *splits, steps=3, batch_size=16, **FAST)


def test_taleb_warmup_freezes_the_encoder_then_trains_it(splits: tuple, net: nn.Module) -> None:
    frozen = Finetuner("taleb2020", steps=3, warmup_epochs=1, batch_size=96, lr=1e-2, **FAST)
    ft = frozen.fit(net, splits[0])  # batch = whole set: 1 step per epoch, so step 0 is warm-up
    after = ft.module_.backbone.state_dict()
    assert any(not torch.equal(after[k], v) for k, v in net.state_dict().items())  # steps 1-2 train it
    head_only = Finetuner("taleb2020", steps=1, warmup_epochs=1, batch_size=96, lr=1e-2, **FAST).fit(net, splits[0])
    assert _same(head_only.module_.backbone.state_dict(), net.state_dict())  # step 0 left it untouched


def test_ordinal_preset_trains_on_an_ordinal_phantom(net: nn.Module) -> None:
    tr, va, te = (data.load("phantom-grade-32", s, n=48) for s in ("train", "val", "test"))
    assert tr.card.task == "ordinal"
    result = finetune(net, tr, va, te, preset="taleb2020", steps=2, batch_size=16, **FAST)
    assert "qw_kappa" in result.metrics or set(result.metrics) >= {"accuracy", "auc"}


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="Unknown finetune preset 'medmnst'.*medmnist"):
        resolve_config("medmnst")
    with pytest.raises(UnknownNameError, match="Unknown key 'epoch'.*epochs"):
        resolve_config("medmnist", epoch=3)
    with pytest.raises(ConfigError, match="exactly one of 'epochs' and 'steps'"):
        resolve_config("medmnist", epochs=2, steps=3)
    with pytest.raises(ConfigError, match="'optimizer' parameter of FinetuneConfig must be one of"):
        resolve_config("medmnist", optimizer="lamb")
    assert resolve_config("anton2022", epochs=2).steps is None  # an override in epochs replaces preset steps
    with pytest.raises(ConfigError, match="not fitted yet"):
        Finetuner().predict_proba(data.load("phantom-binary-32", "test", n=4))


def test_multilabel_task_trains_with_bce_and_scores_every_label(net: nn.Module) -> None:
    card = DatasetCard("tiny-multilabel", task="multi-label", label_names=("a", "b", "c"), channels=1,
                       image_size=16, metrics=("accuracy", "auc"), default_metric="auc")
    rng = np.random.default_rng(0)
    split = {}
    for name, n in (("train", 48), ("val", 24), ("test", 24)):
        images = rng.integers(0, 256, (n, 16, 16, 1), dtype=np.uint8)
        labels = (rng.random((n, 3)) < 0.5).astype(np.uint8)
        labels[0], labels[1] = 0, 1  # both values of every label in every split, so each label's AUC exists
        split[name] = ArrayDataset(card, name, images, labels, fingerprint=name)
    result = finetune(net, split["train"], split["val"], split["test"], steps=3, batch_size=16, **FAST)
    assert set(result.metrics) == {"auc", "accuracy"} and result.chosen["best_step"] is not None
    assert all(0.0 <= v <= 1.0 for v in result.metrics.values())


def test_a_val_split_without_a_class_fails_before_training(splits, net) -> None:
    from medtransfer.errors import DataError
    from medtransfer.protocols._finetune_data import SubsetDataset, labels_of

    train, val, test = splits
    only_zeros = SubsetDataset(val, np.flatnonzero(labels_of(val) == 0))
    spy = _Snapshots()
    with pytest.raises(DataError, match=r"no image of class\(es\) \[1\]"):
        finetune(net, train, only_zeros, test, preset="medmnist", steps=4, callbacks=[spy], **FAST)
    assert spy.first_step is None  # not a single training step was spent


def test_volumes_finetune_with_the_medmnist3d_preset_and_2d_augmentation_is_refused_clearly() -> None:
    tr, va, te = (data.load("phantom3d-binary-28", s, n=n) for s, n in (("train", 24), ("val", 12), ("test", 12)))
    net3d = models.create("test-cnn3d")
    assert resolve_config("medmnist3d") == resolve_config("medmnist", batch_size=32)  # MedMNIST3D's script
    result = finetune(net3d, tr, va, te, preset="medmnist3d", steps=3, batch_size=8, **FAST)
    assert result.chosen["stopped_step"] == 3 and result.chosen["best_step"] is not None
    assert set(result.metrics) == {"accuracy", "auc"} and all(0.0 <= v <= 1.0 for v in result.metrics.values())
    trained = Finetuner("medmnist", steps=2, batch_size=8, **FAST).fit(net3d, tr, va)
    assert trained.predict_proba(te).shape == (12, 2)
    assert any(not torch.equal(trained.module_.backbone.state_dict()[k], v) for k, v in net3d.state_dict().items())
    spy = _Snapshots()
    with pytest.raises(ConfigError, match="holds volumes, and the 'rrc_flip' augmentation.*augment='none'"):
        finetune(net3d, tr, va, te, preset="anton2022", steps=2, batch_size=8, callbacks=[spy], **FAST)
    assert spy.first_step is None  # refused before the first step


def test_evaluation_batches_are_capped_for_volumes_only() -> None:
    from medtransfer.protocols.finetune import _eval_batch_size

    cfg = resolve_config("medmnist3d")
    assert _eval_batch_size(cfg, data.load("phantom3d-binary-64", "val", n=4)) == 16  # 2**22 voxels / 64**3
    assert _eval_batch_size(cfg, data.load("phantom3d-binary-28", "val", n=4)) == 191  # 2**22 // 28**3
    assert _eval_batch_size(resolve_config("medmnist"), data.load("phantom-binary-32", "val", n=4)) == 256


# ---------------------------------------------------------------- Hosseinzadeh Taher et al.'s recipe


def test_ten_crops_are_torchvisions() -> None:
    from torchvision.transforms.v2 import functional as TF

    from medtransfer.protocols.finetune import ten_crops

    x = torch.rand(2, 3, 37, 37)
    ours = ten_crops(x, 32)
    ref = TF.ten_crop(x, [32, 32])  # (tl, tr, bl, br, centre) and the same of the mirrored image
    assert len(ours) == len(ref) == 10 and all(torch.equal(a, b) for a, b in zip(ours, ref, strict=True))


def test_validation_loss_is_cross_entropy_and_bce() -> None:
    from medtransfer.protocols._finetune_module import validation_loss

    logits = torch.randn(6, 3)
    y = torch.tensor([0, 2, 1, 1, 0, 2])
    proba = torch.softmax(logits, 1).double().numpy()
    assert validation_loss(proba, y.numpy(), "multi-class") == pytest.approx(float(F.cross_entropy(logits, y)))
    targets = (torch.rand(6, 3) > 0.5).float()
    ml = torch.sigmoid(logits).double().numpy()
    assert validation_loss(ml, targets.numpy(), "multi-label") == pytest.approx(
        float(F.binary_cross_entropy_with_logits(logits, targets)), rel=1e-6)


def test_the_plateau_schedule_halves_the_lr_after_patience_validations_without_a_lower_loss(net: nn.Module) -> None:
    from medtransfer.protocols._finetune_module import FinetuneModule

    cfg = resolve_config("hosseinzadeh2021", plateau_patience=1, steps=10)
    m = FinetuneModule(models.create("test-cnn"), 2, cfg, task="binary", n_classes=2, contract=net.card.input,
                       seed=0, total_steps=10, warmup_steps=0, run_key="k")
    weight, bias = m.head.weight.detach(), m.head.bias.detach()
    assert float(bias.abs().max()) == 0 and float(weight.std()) < 0.03  # N(0, 0.01), bias 0
    for loss, scale in ((1.0, 1.0), (0.9, 1.0), (0.95, 1.0), (0.96, 0.5), (0.97, 0.5), (0.98, 0.25)):
        m._plateau(loss)
        assert m.lr_scale_ == scale, (loss, m.lr_scale_)
    opt = m.configure_optimizers()
    sched = opt["lr_scheduler"]["scheduler"]
    assert sched.get_last_lr() == [pytest.approx(2e-4 * 0.25)]  # LambdaLR reads the factor the plateau reached


def test_the_hosseinzadeh_preset_selects_on_the_val_loss_and_predicts_on_ten_crops(splits: tuple,
                                                                                    net: nn.Module) -> None:
    ft = Finetuner("hosseinzadeh2021", steps=6, val_every=2, batch_size=16, **FAST).fit(net, splits[0], splits[1])
    losses = [h["val_loss"] for h in ft.history_]
    assert len(losses) == 3 and all(v > 0 for v in losses)
    assert ft.chosen_["val_loss"] == min(losses[: losses.index(min(losses)) + 1])  # the lowest, first if tied
    proba = ft.predict_proba(splits[2])
    assert proba.shape == (48, 2) and np.allclose(proba.sum(1), 1)
    one = Finetuner("hosseinzadeh2021", steps=6, val_every=2, batch_size=16, test_crops=1, **FAST)
    assert not np.allclose(one.fit(net, splits[0], splits[1]).predict_proba(splits[2]), proba)  # the crops count
