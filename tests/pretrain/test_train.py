"""End to end through Lightning: the model folder loads with the same features, runs resume, bad setups raise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medtransfer import _lightning, data, features, models
from medtransfer.errors import ConfigError
from medtransfer.pretrain import PretrainConfig, pretrain
from medtransfer.pretrain.train import CHECKPOINT, PretrainModule

TINY = {"hidden_dim": 16, "out_dim": 8, "hidden": [16]}


def _cfg(**kw: object) -> PretrainConfig:
    base = dict(method="simclr", dataset="phantom-binary-32", model="test-cnn", epochs=2, batch_size=16,
                samples=32, options=TINY, dataset_options={"n": 64})
    return PretrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_model_folder_loads_and_gives_the_same_features(tmp_path: Path) -> None:
    res = pretrain(_cfg(), tmp_path / "simclr-phantom", progress=False)
    rec = res.record
    assert rec["method"] == "simclr" and rec["dataset"] == "phantom-binary-32" and rec["seed"] == 0
    assert rec["epochs"] == 2 and rec["steps"] == 4 and rec["augmentation"] == "natural"  # 32 images / 16 x 2
    assert np.isfinite(rec["final_loss"]) and rec["images_per_s"] > 0
    loaded = models.create(str(res.folder))
    assert loaded.card.method.startswith("simclr") and loaded.card.pretraining_data == "phantom-binary-32"
    assert loaded.card.name == "simclr-phantom"
    untrained = models.create("test-cnn")
    assert any(not torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                     untrained.state_dict().values(), strict=True))
    ds = data.load("phantom-binary-32", "val", n=8)
    again = models.create(str(res.folder))
    a = features.extract(loaded, ds, bf16=False).x
    b = features.extract(again, ds, bf16=False, force=True).x
    assert np.array_equal(a, b)


def test_a_finished_run_is_not_trained_again_and_another_config_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = pretrain(_cfg(epochs=1), out, progress=False)
    second = pretrain(_cfg(epochs=1), out, progress=False)
    assert second.losses == [] and second.record["final_loss"] == first.record["final_loss"]
    # where it runs is not what it is: a bench step (devices=1) finds the CLI's run (devices=auto) done
    third = pretrain(_cfg(epochs=1, devices=1, num_workers=1), out, progress=False)
    assert third.losses == [] and third.record["final_loss"] == first.record["final_loss"]
    with pytest.raises(ConfigError, match="another config"):
        pretrain(_cfg(epochs=1, seed=1), out, progress=False)


def _killed(cfg: PretrainConfig, out: Path, monkeypatch: pytest.MonkeyPatch, *, epoch: int, step: int = 0) -> None:
    """Run `cfg` into `out`, killed (as by a crash) before step `step` of epoch `epoch`, both counted from 0."""
    training_step = PretrainModule.training_step

    def dying(self: PretrainModule, batch: list[torch.Tensor], idx: int) -> torch.Tensor:
        if self.current_epoch == epoch and idx >= step:
            raise RuntimeError("killed")
        return training_step(self, batch, idx)

    monkeypatch.setattr(PretrainModule, "training_step", dying)
    with pytest.raises(RuntimeError, match="killed"):
        pretrain(cfg, out, progress=False)
    monkeypatch.setattr(PretrainModule, "training_step", training_step)


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_lightning, "CHECKPOINT_EVERY_S", 0.0)  # a checkpoint at every epoch's end
    out = tmp_path / "run"
    _killed(_cfg(), out, monkeypatch, epoch=1)
    assert (out / CHECKPOINT).is_file() and not (out / "card.json").exists()
    res = pretrain(_cfg(), out, progress=False)
    assert res.record["resumed_from_checkpoint"] and res.record["steps"] == 4
    assert len(res.losses) == 4  # epoch one's losses come back from the checkpoint
    assert res.record["final_loss"] == pytest.approx(float(np.mean(res.losses[2:])))  # the last epoch's mean
    assert not (out / CHECKPOINT).exists()  # a finished folder holds the model, not the resume state


def test_a_run_shorter_than_the_checkpoint_interval_writes_none_and_a_kill_starts_it_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = pretrain(_cfg(), tmp_path / "whole", progress=False)  # seconds: under CHECKPOINT_EVERY_S (60)
    out = tmp_path / "killed"
    _killed(_cfg(), out, monkeypatch, epoch=1)
    assert not (out / CHECKPOINT).exists()  # epoch one ended seconds after the start: no save yet
    again = pretrain(_cfg(), out, progress=False)
    assert not again.record["resumed_from_checkpoint"] and again.losses == whole.losses


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_a_run_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    monkeypatch.setattr(_lightning, "CHECKPOINT_EVERY_S", 0.0)
    cfg = _cfg(method=method, epochs=3)  # 2 steps per epoch
    whole = pretrain(cfg, tmp_path / "whole", progress=False)
    out = tmp_path / "killed"
    _killed(cfg, out, monkeypatch, epoch=1, step=1)  # one step of epoch two done, after epoch one's checkpoint
    torch.manual_seed(1234)  # whatever the process drew in between must not matter
    resumed = pretrain(cfg, out, progress=False)
    assert resumed.record["resumed_from_checkpoint"] and resumed.record["steps"] == whole.record["steps"] == 6
    assert resumed.losses == whole.losses  # the same batches, the same views, step by step
    a, b = models.create(str(whole.folder)).state_dict(), models.create(str(out)).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_3d_pretext_task_writes_a_3d_model(tmp_path: Path) -> None:
    cfg = _cfg(method="rotation", dataset="phantom3d-binary-28", model="test-cnn3d", epochs=1, batch_size=4,
               samples=8, dataset_options={"n": 8})
    res = pretrain(cfg, tmp_path / "rot3d", progress=False)
    model = models.create(str(res.folder))
    assert model.card.dims == 3
    assert model(torch.zeros(2, 1, 28, 28, 28)).shape == (2, 16)


def test_dims_and_method_mismatches_raise_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not match dataset"):
        pretrain(_cfg(dims=3), tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="Use rotation, rpl, jigsaw, cpc or exemplar in 3D"):
        pretrain(_cfg(dataset="phantom3d-binary-28", model="test-cnn3d"), tmp_path / "b", progress=False)
    with pytest.raises(ConfigError, match="pick a 2D model"):
        pretrain(_cfg(model="test-cnn3d"), tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()  # a rejected config does not claim the folder: the fixed one may use it


def test_cli_pretrain_then_eval_with_the_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medtransfer.cli import app

    out = tmp_path / "simclr-cli"
    runner = CliRunner()
    res = runner.invoke(app, ["pretrain", "simclr", "--dataset", "phantom-binary-28", "--out", str(out),
                              "--data-root", str(tmp_path), "model=test-cnn", "epochs=1", "samples=32",
                              "batch_size=16", "dataset_options.n=32", "options.hidden_dim=8"])
    assert res.exit_code == 0, res.output
    assert "final loss" in res.output and "images/s" in res.output
    hint = f"use it: medtransfer eval linear --model {out} --dataset phantom-binary-28 --data-root {tmp_path}"
    assert hint in " ".join(res.output.split())  # the hint's command works as printed, data root included
    res = runner.invoke(app, ["eval", "linear", "--model", str(out), "--dataset", "phantom-binary-28", "--json"])
    assert res.exit_code == 0, res.output
    assert '"accuracy"' in res.output
    res = runner.invoke(app, ["pretrain", "simclr"])
    assert res.exit_code != 0 and "needs --dataset" in str(res.exception)


def test_a_start_model_without_mean_std_input_is_refused(tmp_path: Path) -> None:
    import dataclasses

    from medtransfer.models import create, save_model_dir

    base = create("test-cnn")
    raw = dataclasses.replace(base.card, name="raw-input", input=dataclasses.replace(base.card.input,
                                                                                     normalization="none"))
    save_model_dir(tmp_path / "raw", base, raw)
    cfg = PretrainConfig("simclr", "phantom-binary-32", model=str(tmp_path / "raw"), epochs=1)
    with pytest.raises(ConfigError, match="expects 'none' input normalisation"):
        pretrain(cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "card.json").exists()


def test_medtransfer_device_places_a_run_and_a_missing_gpu_claims_nothing(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from medtransfer.pretrain.train import placement

    monkeypatch.setenv("MEDTRANSFER_DEVICE", "cpu")
    assert placement(_cfg()) == ("cpu", 1)
    assert placement(_cfg(accelerator="gpu", devices=2)) == ("gpu", 2)  # a config's own choice stays
    if torch.cuda.is_available():
        return
    monkeypatch.setenv("MEDTRANSFER_DEVICE", "cuda")
    with pytest.raises(ConfigError, match="sees no CUDA device"):
        pretrain(_cfg(), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
