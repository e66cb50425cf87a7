import logging
import warnings

from medtransfer._lightning import quiet_lightning


def test_quiet_lightning_hides_known_noise_and_restores_the_loggers():
    logger = logging.getLogger("pytorch_lightning.trainer")
    logger.setLevel(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_lightning():
            assert logger.level == logging.WARNING
            warnings.warn("The 'train_dataloader' does not have many workers which may be a bottleneck.", stacklevel=1)
            warnings.warn("something users must see", stacklevel=1)
    assert [str(w.message) for w in caught] == ["something users must see"]
    assert logger.level == logging.DEBUG


def test_a_torch_device_maps_to_lightnings_accelerator_and_device_index() -> None:
    import torch

    from medtransfer._lightning import lightning_devices

    assert lightning_devices(torch.device("cpu")) == ("cpu", 1)
    assert lightning_devices(torch.device("cuda")) == ("gpu", [0])
    assert lightning_devices(torch.device("cuda", 1)) == ("gpu", [1])  # not the first GPU when cuda:1 is asked


def _fit(ckpt, **trainer_kw):
    """Train a one-layer module on 2 batches per epoch with the checkpoint callback `ckpt`; returns `ckpt`."""
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).square().mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with quiet_lightning():
        trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=[ckpt], **trainer_kw)
        trainer.fit(Module(), DataLoader(TensorDataset(torch.ones(4, 2)), batch_size=2))
    return ckpt


def test_the_epoch_end_checkpoint_skips_the_last_epoch_and_saves_that_epochs_state(tmp_path) -> None:
    import torch

    from medtransfer._lightning import LastCheckpoint

    ckpt = _fit(LastCheckpoint(tmp_path, at_epoch_end=True, min_seconds=0.0), max_epochs=3)
    assert ckpt.saves == 2  # after epochs one and two; the run's own output follows the third at once
    state = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert state["epoch"] == 1 and state["global_step"] == 4  # epoch two's end: 2 x 2 steps
    assert not (tmp_path / "last.tmp").exists()
    # max_steps ends the run at epoch two's end
    ckpt = _fit(LastCheckpoint(tmp_path / "steps", at_epoch_end=True, min_seconds=0.0), max_epochs=10, max_steps=4)
    assert ckpt.saves == 1


def test_the_epoch_end_checkpoint_waits_min_seconds_between_saves(tmp_path) -> None:
    from medtransfer._lightning import LastCheckpoint

    ckpt = _fit(LastCheckpoint(tmp_path, at_epoch_end=True, min_seconds=3600.0), max_epochs=4)
    assert ckpt.saves == 0 and not (tmp_path / "last.ckpt").exists()


def test_the_step_checkpoint_is_gated_too_and_never_written_at_the_last_step(tmp_path) -> None:
    import torch

    from medtransfer._lightning import LastCheckpoint

    assert _fit(LastCheckpoint(tmp_path / "a", every=1, min_seconds=0.0), max_steps=4).saves == 3  # steps 1-3
    assert torch.load(tmp_path / "a" / "last.ckpt", weights_only=False)["global_step"] == 3
    assert _fit(LastCheckpoint(tmp_path / "b", every=1, min_seconds=3600.0), max_steps=4).saves == 0
    assert _fit(LastCheckpoint(tmp_path / "c", every=1), max_steps=4).saves == 0  # CHECKPOINT_EVERY_S: a minute
