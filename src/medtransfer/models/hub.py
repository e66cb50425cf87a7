"""The model hub: fetch published checkpoints, verify them, read them safely, convert and store them.

Files live under ``$MEDTRANSFER_HOME`` (default ``~/.cache/medtransfer``):

- ``downloads/<published file name>``: the original file, as published (a manual download goes here too);
- ``models/<name>/``: the converted model folder (``card.json`` + ``model.safetensors``) that `create(name)` loads;
- ``models.lock.json``: the sha256 of each published file whose card pins none, recorded on its first verified
  use (download + read + convert + strict load all succeeded); every later copy of that file must match it.

Reading is safe by default: torch files load with ``weights_only=True``; a format that needs a full unpickle (BYOL's
Haiku ``.pkl``) is refused, before a byte is read, unless the caller passes ``trust=True`` for that file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import pickle
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medtransfer._download import download, file_digest
from medtransfer.config import home
from medtransfer.errors import CheckpointError, ChecksumError, ConfigError, DownloadError
from medtransfer.models import backbones3d  # noqa: F401  (registers the 3D encoders in ARCHS)
from medtransfer.models.backbones import build
from medtransfer.models.card import ModelCard
from medtransfer.models.convert import CONVERTERS
from medtransfer.models.local import is_complete_model_dir, save_model_dir
from medtransfer.models.status import converted_dir, is_converted, published_file, weights_status  # noqa: F401
from medtransfer.models.weights import load_strict
from medtransfer.models.zoo import MODELS

log = logging.getLogger(__name__)
LOCK_FILE = "models.lock.json"
LOCK_FORMAT = "medtransfer-lock/1"
# Harmless classes that published torch checkpoints carry beside their tensors (PyContrast and the ImageNet
# example save their argparse options); weights_only unpickling may rebuild these, and nothing else.
_SAFE_GLOBALS = [argparse.Namespace]


def how_to_get(card: ModelCard) -> str:
    """The commands that put the card's weights on disk."""
    trust = " --trust" if CONVERTERS.get(card.converter or "").reader == "pickle" else ""
    if card.url:
        return (f"Run `medtransfer models fetch {card.name}{trust}` (downloads {card.url}), or download that file "
                f"by hand and run `medtransfer models convert {card.name} --from FILE{trust}`.")
    return f"{card.manual} Then run `medtransfer models convert {card.name} --from FILE{trust}`."


# ---------------------------------------------------------------------------------------------- safe reading
def read_checkpoint(path: str | os.PathLike[str], reader: str, *, trust: bool = False) -> Any:
    """Read a checkpoint the way its format needs, refusing anything that could run code unless `trust`.

    Args:
        path: the checkpoint file (for ``tensorflow``: the checkpoint prefix, e.g. ``model.ckpt-225206``).
        reader: ``torch``, ``pickle`` or ``tensorflow`` (the converter's `reader`).
        trust: allow a full unpickle of this file. Only for files from a source you trust: unpickling runs
            whatever code the file names.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, or needs a full unpickle and `trust` is False.
    """
    path = Path(path)
    if reader == "tensorflow":
        return _read_tensorflow(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist.")
    if reader == "pickle":
        return _read_pickle(path, trust=trust)
    return _read_torch(path, trust=trust)


def _read_torch(path: Path, *, trust: bool) -> Any:
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" not in str(e).lower():  # a damaged legacy (non-zip) torch pickle
            raise CheckpointError(f"Could not read {str(path)!r} as a torch checkpoint ({e}); it may be "
                                  f"truncated. Delete it and download it again.") from e
        reason = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln or "Unsupported" in ln), "")
        raise CheckpointError(
            f"Refused to read {str(path)!r}: besides tensors it holds Python objects that only a full unpickle "
            f"could rebuild, and a full unpickle can run arbitrary code. Nothing was run. If you trust this file's "
            f"source, pass --trust (trust=True). ({reason})"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"Could not read {str(path)!r} as a torch checkpoint ({str(e).splitlines()[0]}); it "
                              f"may be truncated. Delete it and download it again.") from e


def _read_pickle(path: Path, *, trust: bool) -> Any:
    if not trust:
        raise CheckpointError(
            f"Refused to read {str(path)!r}: this format is a Python pickle that needs a full unpickle, which can "
            f"run arbitrary code. Nothing was read or run. If you trust this file's source (and its sha256 matches "
            f"the card), pass --trust (trust=True) for it."
        )
    try:
        with open(path, "rb") as f:
            return pickle.load(f)  # noqa: S301 -- explicitly trusted by the caller for this file
    except ModuleNotFoundError as e:
        raise CheckpointError(f"Unpickling {str(path)!r} needs the module {e.name!r} (BYOL's checkpoint refers to "
                              f"Haiku/JAX classes): pip install dm-haiku jax, then convert again.") from e
    except (EOFError, pickle.UnpicklingError, ValueError) as e:
        raise CheckpointError(f"Could not unpickle {str(path)!r} ({e}); it may be truncated. Delete it and "
                              f"download it again.") from e


def _read_tensorflow(path: Path) -> dict[str, Any]:
    try:
        import tensorflow as tf  # optional extra, only SimCLR's TF checkpoints need it
    except ImportError as e:
        raise CheckpointError(
            f"Reading the TensorFlow checkpoint {str(path)!r} needs tensorflow: pip install 'medtransfer[simclr]'. "
            f"Or convert it elsewhere with tonylins/simclr-converter and pass the resulting .pth with "
            f"--format torchvision."
        ) from e
    try:
        reader = tf.train.load_checkpoint(str(path))
    except (ValueError, OSError, tf.errors.OpError) as e:
        raise CheckpointError(f"Could not read the TensorFlow checkpoint {str(path)!r} ({e}); pass the prefix "
                              f"(e.g. .../model.ckpt-225206), not the .index or .data file.") from e
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


# ------------------------------------------------------------------------------------------------ lock file
def read_lock() -> dict[str, dict[str, str]]:
    """{model name: {published file name: sha256}} recorded so far."""
    path = home() / LOCK_FILE
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"Lock file {str(path)!r} is not valid JSON ({e}); fix or delete it.") from e
    return dict(doc.get("models", {}))


def _record_lock(name: str, filename: str, digest: str) -> None:
    models = read_lock()
    models.setdefault(name, {})[filename] = digest
    path = home() / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"format": LOCK_FORMAT, "models": models}, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def check_digest(card: ModelCard, path: str | os.PathLike[str]) -> str | None:
    """Check a published file against the card's sha256 (full or prefix), else against the lock file.

    Returns:
        The file's sha256; None for a TensorFlow checkpoint prefix, which is several files.

    Raises:
        ChecksumError: the digest differs from the pinned or the recorded one.
    """
    path = Path(path)
    if not path.is_file():
        return None
    digest = file_digest(path)
    if card.sha256 is not None and not digest.startswith(card.sha256):
        raise ChecksumError(f"{str(path)!r} has sha256 {digest}, but model {card.name!r} pins {card.sha256}: the "
                            f"file is corrupt, truncated or another version. Download it again from "
                            f"{card.url or 'its source'}.")
    recorded = read_lock().get(card.name, {}).get(path.name)
    if card.sha256 is None and recorded is not None and recorded != digest:
        raise ChecksumError(f"{str(path)!r} has sha256 {digest}, but {recorded} was recorded for it in "
                            f"{home() / LOCK_FILE} when {card.name!r} was first converted: the file is corrupt or "
                            f"changed. If the publisher really changed it, delete that entry and convert again.")
    return digest


# ------------------------------------------------------------------------------------------------ converting
def convert_file(path: str | os.PathLike[str], *, arch: str, converter: str, in_chans: int = 3,
                 trust: bool = False) -> nn.Module:
    """Read `path`, convert it with `converter` and load it strictly into a fresh `arch`."""
    conv = CONVERTERS.get(converter)
    ckpt = read_checkpoint(path, conv.reader, trust=trust)
    try:
        sd = conv.fn(ckpt)
    except CheckpointError as e:
        raise CheckpointError(f"Converting {str(path)!r} as {converter!r}: {e}") from e
    model = build(arch, in_chans)
    for key, value in model.state_dict().items():
        # BatchNorm step counters are absent from checkpoints saved before torch 0.4.1 (and from TF/Haiku ones);
        # torch's own loader fills them with 0 the same way. They take no part in eval-mode features.
        if key.endswith(".num_batches_tracked") and key not in sd and key.rsplit(".", 1)[0] + ".weight" in sd:
            sd[key] = torch.zeros_like(value)
    load_strict(model, sd, source=f"{str(path)!r} (converter {converter!r}, architecture {arch!r})")
    return model


def convert(name: str, src: str | os.PathLike[str], *, trust: bool = False, fmt: str | None = None) -> Path:
    """Convert a local copy of zoo model `name`'s published file into its model folder; returns the folder.

    Args:
        name: a zoo model with published weights.
        src: the original file (as published), or a TF checkpoint prefix for ``simclr-tf``.
        trust: allow a full unpickle of `src` (BYOL's .pkl needs it).
        fmt: another converter than the card's (e.g. ``torchvision`` for SimCLR converted elsewhere).

    Examples:
        >>> convert("moco-v2", "moco_v2_800ep_pretrain.pth.tar")  # doctest: +SKIP
        PosixPath('~/.cache/medtransfer/models/moco-v2')
    """
    card = _published_card(name)
    digest = check_digest(card, src)
    converter = fmt or card.converter
    assert converter is not None, "published cards name a converter (ModelCard.__post_init__)"
    model = convert_file(src, arch=card.arch, converter=converter, in_chans=card.input.in_chans, trust=trust)
    record = {"source_file": str(src), "sha256": digest, "converter": converter, "url": card.url,
              "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    folder = save_model_dir(converted_dir(name), model, card, record=record)
    if card.sha256 is None and digest is not None:
        _record_lock(name, Path(src).name, digest)
    log.info("converted %s from %s into %s", name, src, folder)
    return folder


def fetch(name: str, *, trust: bool = False, progress: bool = True, force: bool = False) -> Path:
    """Download (with resume), verify and convert zoo model `name`; returns its model folder.

    A file already at `published_file(card)` (e.g. placed there by hand) is used without downloading.

    Raises:
        DownloadError: offline, or the card has no direct URL; the message says where to put the file by hand.
        ChecksumError: the file does not match the pinned or recorded sha256 (a download is then deleted).
        CheckpointError: the format needs a full unpickle and `trust` is False (raised before downloading).
    """
    card = _published_card(name)
    if is_converted(name) and not force:
        return converted_dir(name)
    if CONVERTERS.get(card.converter or "").reader == "pickle" and not trust:
        raise CheckpointError(f"Model {name!r} is published as a Python pickle ({card.filename}), which needs a full "
                              f"unpickle that can run arbitrary code. Nothing was downloaded or run. If you trust "
                              f"{card.url}, run `medtransfer models fetch {name} --trust`.")
    dest = published_file(card)
    if not dest.is_file():
        if card.url is None:
            raise DownloadError(f"Model {name!r} cannot be downloaded automatically. {how_to_get(card)}")
        full = card.sha256 if card.sha256 and len(card.sha256) == 64 else None
        try:  # to a side name: `dest` only ever holds a file that passed the digest check
            tmp = download(card.url, dest.with_name(dest.name + ".unverified"), expected=full, progress=progress)
        except DownloadError as e:
            raise DownloadError(f"Could not download {card.url} ({e.__cause__ or e}). If this machine is offline, "
                                f"download it elsewhere and put it at {dest}, then run this again; or run "
                                f"`medtransfer models convert {name} --from FILE`.") from e
        try:
            check_digest(card, tmp)
        except ChecksumError:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, dest)
    return convert(name, dest, trust=trust)


def _published_card(name: str) -> ModelCard:
    card = MODELS.get(name)
    if not card.published:
        raise ConfigError(f"Model {name!r} is a random initialisation of {card.arch!r}; it has no published weights "
                          f"to fetch or convert. See `medtransfer models list` (column 'weights').")
    return card


# ----------------------------------------------------------------------------------------- user checkpoints
def user_card(path: str | os.PathLike[str], model: nn.Module, *, arch: str, fmt: str, digest: str) -> ModelCard:
    """A card for a user's own checkpoint: ImageNet input contract, feature size measured on the model."""
    with torch.inference_mode():
        dim = model.eval()(torch.zeros(1, 3, 64, 64)).shape[-1]
    return ModelCard(Path(path).name, arch, int(dim), converter=fmt, method="user checkpoint",
                     description=f"{path} (sha256 {digest[:12]}), converted with {fmt!r}.")


def import_checkpoint(path: str | os.PathLike[str], *, arch: str, fmt: str = "torchvision",
                      trust: bool = False) -> Path:
    """Convert a user's checkpoint once into a model folder (cached by its sha256); returns the folder.

    The folder works wherever a model name does (``--model FOLDER``, `create(FOLDER)`, benchmark grids).
    """
    path = Path(path)
    digest = file_digest(path) if path.is_file() else hashlib.sha256(str(path).encode()).hexdigest()
    folder = home() / "models" / "user" / f"{path.name}-{arch}-{fmt}-{digest[:12]}"
    if is_complete_model_dir(folder):
        return folder
    model = convert_file(path, arch=arch, converter=fmt, trust=trust)
    card = user_card(path, model, arch=arch, fmt=fmt, digest=digest)
    return save_model_dir(folder, model, card, record={"source_file": str(path), "sha256": digest})
