"""`pretrain(cfg, out)`: one Lightning run of a method on a dataset's training split -> a model folder.

The training split is decoded once into a uint8 tensor; batches are augmented on the device as tensors. The
run writes a Lightning checkpoint (``<out>/checkpoints/last.ckpt``) at the end of an epoch, at most once a minute
and not after the last (`medtransfer._lightning.LastCheckpoint`), random streams included, so a killed run
continues where it stopped when called again and ends with the weights an uninterrupted run would have had; a
finished run with the same config returns its folder at once. The final epoch's backbone is saved with
`save_model_dir` (``card.json`` + ``model.safetensors`` + the training record), loadable with
``medtransfer.models.create(out)``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from medtransfer import __version__
from medtransfer import data as mdata
from medtransfer._lightning import LastCheckpoint, ProgressLog, lightning_devices, quiet_lightning
from medtransfer.config import DEVICE_ENV, config_hash, to_dict
from medtransfer.data.transforms import match_channels, preprocess
from medtransfer.errors import ConfigError
from medtransfer.features import bf16_supported, default_device
from medtransfer.models import ModelCard, card_of, create, read_model_dir, save_model_dir
from medtransfer.models.local import is_model_dir
from medtransfer.pretrain.base import METHODS, PretrainConfig, SSLMethod

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoints/last.ckpt"
RUN_FILE = "run.json"


@dataclass
class PretrainResult:
    """What a run produced: the model folder, its record, and the per-step training losses (the whole run, also
    across a resume; empty when the folder was already finished)."""

    folder: Path
    record: dict[str, Any]
    losses: list[float] = field(default_factory=list)


class PretrainModule(pl.LightningModule):
    """Wraps an `SSLMethod`: uint8 batch -> [0, 1] with the backbone's channels -> loss; AdamW + cosine."""

    def __init__(self, method: SSLMethod, cfg: PretrainConfig, *, in_chans: int, total_steps: int,
                 loader_generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.method = method
        self.cfg = cfg
        self.in_chans = in_chans
        self.total_steps = max(1, total_steps)
        self.losses: list[float] = []
        self.images = 0
        self.seconds = 0.0
        self._t0: float | None = None
        self.loader_generator = loader_generator  # the shuffling stream, saved with each checkpoint

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = match_channels(batch[0].float().div_(255.0), self.in_chans)  # (B, C, ...) in [0, 1]
        loss = self.method(x, progress=min(1.0, self.global_step / self.total_steps))
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        self.losses.append(float(loss.detach()))
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._t0 is not None:  # time of forward + backward + step, without data loading
            self.seconds += time.perf_counter() - self._t0
            self.images += len(batch[0])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["medtransfer_losses"] = list(self.losses)  # so a resumed run's record covers the whole run
        checkpoint["medtransfer_rng"] = rng_state(self.loader_generator)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.losses = [float(v) for v in checkpoint.get("medtransfer_losses", [])]
        if "medtransfer_rng" in checkpoint:  # checkpoints of earlier versions resume with fresh random streams
            set_rng_state(checkpoint["medtransfer_rng"], self.loader_generator)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.method.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        # the reference's CosineAnnealingLR to lr/50, stepped per batch over the whole run (also under max_steps)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.total_steps, eta_min=self.cfg.lr / 50)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def rng_state(loader_generator: torch.Generator | None) -> dict[str, Any]:
    """The random streams a run draws from after an epoch ends: the shuffling generator's, torch's global CPU
    stream (the batched augmentations and the pretext labels) and every CUDA device's. Saved with each epoch's
    checkpoint, so a run killed in the middle of the next epoch redraws exactly that epoch's order and views
    when it resumes, and ends with the weights of an uninterrupted run."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], loader_generator: torch.Generator | None) -> None:
    """Restore what `rng_state` saved (a CUDA state only where the same number of devices is there)."""
    torch.set_rng_state(state["torch"])
    if loader_generator is not None and "loader" in state:
        loader_generator.set_state(state["loader"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def resolve_dims(cfg: PretrainConfig) -> tuple[int, str]:
    """(dims, backbone name) of a run, checked against the dataset, the model card and the method."""
    card = mdata.get_card(cfg.dataset)
    dims = cfg.dims or card.dims
    if dims != card.dims:
        example = "phantom3d-binary-28" if dims == 3 else "breastmnist"
        raise ConfigError(f"--dims {dims} does not match dataset {cfg.dataset!r}, which is {card.dims}D. Leave "
                          f"--dims out, or pick a {dims}D dataset (e.g. {example}).")
    entry = METHODS.get(cfg.method)
    if dims not in entry.dims:
        raise ConfigError(f"Method {cfg.method!r} runs on {' or '.join(f'{d}D' for d in entry.dims)} data; "
                          f"dataset {cfg.dataset!r} is {dims}D. Use rotation, rpl, jigsaw, cpc or exemplar in 3D.")
    model = cfg.model or ("resnet18-small" if dims == 2 else "resnet18-3d")
    return dims, model


def load_images(cfg: PretrainConfig, card: ModelCard) -> torch.Tensor:
    """The training split (labels unused) as uint8 (N, C, ...) at the model's input size, `cfg.samples` of it."""
    ds = mdata.load(cfg.dataset, "train", data_root=cfg.data_root, **cfg.dataset_options)
    index = np.arange(len(ds))
    if cfg.samples is not None and cfg.samples < len(ds):
        index = np.sort(np.random.default_rng(cfg.seed).choice(len(ds), cfg.samples, replace=False))
    c = card.input
    chunks = []
    for start in range(0, len(index), 512):  # in chunks: float copies of 3D volumes are large
        x = preprocess(ds.images(index[start:start + 512]), input_size=c.input_size, crop_pct=c.crop_pct,
                       interpolation=c.interpolation, in_chans=1 if c.in_chans == 1 else ds.card.channels,
                       normalization="none")
        chunks.append(x.mul(255.0).round_().to(torch.uint8).contiguous())
    return torch.cat(chunks)


def resolved_precision(cfg: PretrainConfig) -> str:
    """The Lightning precision of a run: `cfg.precision`, or for "auto" bf16-mixed where it pays, else 32-true."""
    if cfg.precision != "auto":
        return cfg.precision
    # bf16 where it pays (CUDA, CPUs with AMX); on AVX512 CPUs it is slower than fp32 (measured: 2.5 vs 5.1 images/s)
    device = default_device("cpu" if cfg.accelerator == "cpu" else None)
    return "bf16-mixed" if bf16_supported(device) else "32-true"


def _done(out: Path, digest: str) -> dict[str, Any] | None:
    """The record of a finished run of the same config in `out`; raises when `out` holds another run."""
    if not is_model_dir(out):
        return None
    _, record = read_model_dir(out)
    if record.get("config_hash") != digest:
        raise ConfigError(f"{str(out)!r} already holds a model pretrained with another config "
                          f"({record.get('method')} on {record.get('dataset')}). Choose another --out, or delete it.")
    return record


def _claim(out: Path, cfg: PretrainConfig, digest: str) -> None:
    """Mark `out` as this config's run (``run.json``), so a resume never continues another config's checkpoint."""
    marker = out / RUN_FILE
    if marker.is_file():
        other = json.loads(marker.read_text())
        if other.get("config_hash") != digest:
            raise ConfigError(f"{str(out)!r} holds an unfinished run of another config ({other.get('config')}). "
                              f"Run that config again to resume it, choose another --out, or delete the folder.")
        return
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"config_hash": digest, "config": to_dict(cfg)}, indent=1) + "\n")


def placement(cfg: PretrainConfig) -> tuple[str, Any]:
    """Lightning's (accelerator, devices) of a run: the config's, or for "auto" the device of
    ``$MEDTRANSFER_DEVICE`` when it is set (checked: a CUDA device that is not there raises `ConfigError`)."""
    if cfg.accelerator == "auto" and os.environ.get(DEVICE_ENV):
        return lightning_devices(default_device())
    return cfg.accelerator, cfg.devices


def _trainer(cfg: PretrainConfig, out: Path, progress: bool, where: tuple[str, Any]) -> pl.Trainer:
    # one file, replaced at an epoch's end (at most once a minute): where a killed run continues
    ckpt = LastCheckpoint(out / Path(CHECKPOINT).parent, at_epoch_end=True)
    return pl.Trainer(max_epochs=cfg.epochs, max_steps=cfg.max_steps, accelerator=where[0], devices=where[1],
                      strategy="auto", precision=resolved_precision(cfg), logger=False, enable_checkpointing=False,
                      callbacks=[ckpt, ProgressLog(f"pretrain {cfg.method} / {cfg.dataset}")],
                      default_root_dir=out, enable_progress_bar=progress, enable_model_summary=False,
                      log_every_n_steps=1, num_sanity_val_steps=0)


def pretrain(cfg: PretrainConfig, out: str | Path, *, progress: bool | None = None) -> PretrainResult:
    """Pretrain `cfg.model` with `cfg.method` on `cfg.dataset` and write the model folder `out`.

    Args:
        cfg: the run (see `PretrainConfig`).
        out: the model folder; also holds the Lightning checkpoint a killed run resumes from.
        progress: draw a progress bar; None draws one only when stderr is a terminal.

    Examples:
        >>> res = pretrain(PretrainConfig("simclr", "phantom-binary-32", epochs=2), "runs/simclr-phantom")
        >>> create("runs/simclr-phantom")  # the pretrained backbone, usable as any zoo model
    """
    out = Path(out)
    # where it runs (devices, accelerator, loader workers) is not part of what the run is: the same recipe from
    # `medtransfer pretrain` (every device) and from a bench step (one device) is one model folder
    digest = config_hash(dataclasses.replace(cfg, devices="auto", accelerator="auto", num_workers=0))
    record = _done(out, digest)
    if record is not None:
        log.info("%s already holds this finished run; not training again", out)
        return PretrainResult(out, record)
    where = placement(cfg)
    module, loader, card = _prepare(cfg)
    _claim(out, cfg, digest)  # only a valid config (on a device that is there) claims the folder
    ckpt = out / CHECKPOINT
    resumed = ckpt.is_file()
    start = time.perf_counter()
    with quiet_lightning():
        trainer = _trainer(cfg, out, sys.stderr.isatty() if progress is None else progress, where)
        trainer.fit(module, loader, ckpt_path=str(ckpt) if resumed else None)
    if trainer.interrupted:  # Ctrl-C: Lightning stops gracefully; the checkpoint stays for the next call
        raise KeyboardInterrupt(f"pretraining interrupted; run the same command again to resume from {ckpt}")
    record = _record(cfg, module, trainer, model_name=card.name, n_images=len(loader.dataset),  # type: ignore[arg-type]
                     batch=loader.batch_size or 1, wall=time.perf_counter() - start, digest=digest, resumed=resumed)
    if trainer.is_global_zero:
        new_card = dataclasses.replace(
            card, name=out.name, method=f"{cfg.method} (medtransfer pretrain)", pretraining_data=cfg.dataset,
            description=f"{card.name} pretrained here with {cfg.method} on {cfg.dataset} for {cfg.epochs} "
                        f"epochs (seed {cfg.seed}); final training loss {record['final_loss']:.4f}.")
        save_model_dir(out, module.method.backbone, new_card, record)
        # the resume state (optimizer and heads, ~3x the backbone) is not part of the model folder users share
        shutil.rmtree(out / Path(CHECKPOINT).parent, ignore_errors=True)
    return PretrainResult(out, record, list(module.losses))


def _prepare(cfg: PretrainConfig) -> tuple[PretrainModule, DataLoader, ModelCard]:
    """Check the setup, build the backbone + method, and load the images: (module, loader, base model card)."""
    dims, model_name = resolve_dims(cfg)
    backbone = create(model_name).train()
    card = card_of(backbone)
    if card.dims != dims:
        raise ConfigError(f"Model {model_name!r} is {card.dims}D but dataset {cfg.dataset!r} is {dims}D; pick a "
                          f"{dims}D model (e.g. {'resnet18-3d' if dims == 3 else 'resnet18-small'}).")
    if card.input.normalization != "meanstd":  # the methods normalise views by mean/std (SSLMethod.normalize)
        raise ConfigError(f"Model {model_name!r} expects {card.input.normalization!r} input normalisation; "
                          f"pretraining here starts from models with mean/std input. Start from its architecture "
                          f"({card.arch!r} cards such as 'resnet50') or convert it to a mean/std model first.")
    images = load_images(cfg, card)
    pl.seed_everything(cfg.seed, verbose=False)  # the heads' initialisation, shuffling and augmentations
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(TensorDataset(images), batch_size=min(cfg.batch_size, len(images)), shuffle=True,
                        drop_last=True, num_workers=cfg.num_workers, generator=generator)
    steps = cfg.epochs * len(loader) if cfg.max_steps < 0 else min(cfg.max_steps, cfg.epochs * len(loader))
    method = METHODS.get(cfg.method).build(backbone, card.feature_dim, cfg, mean=card.input.mean,
                                           std=card.input.std, dims=dims)
    if dims == 2:  # oneDNN / cuDNN convolutions on NHWC weights (the views follow): 1.65x here (docs/benchmarks.md)
        method.to(memory_format=torch.channels_last)
    module = PretrainModule(method, cfg, in_chans=card.input.in_chans, total_steps=steps, loader_generator=generator)
    return module, loader, card


def _record(cfg: PretrainConfig, module: PretrainModule, trainer: pl.Trainer, *, model_name: str, n_images: int,
            batch: int, wall: float, digest: str, resumed: bool) -> dict[str, Any]:
    """How the weights were made: the training record stored in the model card."""
    last_epoch = module.losses[-max(1, n_images // batch):] if module.losses else []
    return {
        "method": cfg.method, "dataset": cfg.dataset, "model": model_name, "epochs": cfg.epochs,
        "steps": int(trainer.global_step), "augmentation": cfg.augmentation, "seed": cfg.seed,
        "final_loss": float(np.mean(last_epoch)) if last_epoch else float("nan"),
        "images_per_s": round(module.images / module.seconds, 1) if module.seconds else None,
        "n_images": n_images, "batch_size": batch, "wall_s": round(wall, 2), "resumed_from_checkpoint": resumed,
        "checkpoint_selection": "final epoch (no validation or test data is used)",
        "device": str(trainer.strategy.root_device), "world_size": trainer.world_size,
        "precision": str(trainer.precision), "config": to_dict(cfg), "config_hash": digest,
        "medtransfer": __version__, "torch": torch.__version__,
    }
