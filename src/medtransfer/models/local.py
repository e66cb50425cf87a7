"""Model folders: a card plus safetensors weights, the form every model made or converted here is stored in.

A folder holds ``card.json`` (the ModelCard, a format tag and a free-form ``record`` of how the weights were
made: method, data, epochs, seed, final loss ...) and ``model.safetensors`` (the backbone's flat state dict).
`medtransfer.models.create(path)` builds the card's architecture and loads the weights strictly, so a folder is
usable wherever a registered name is (``--model runs/simclr-breastmnist``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medtransfer.config import from_dict
from medtransfer.errors import CheckpointError, MedtransferError
from medtransfer.models.card import ModelCard

if TYPE_CHECKING:  # torch is imported by the functions that use it: `models list` reads folders without it
    import torch
    from torch import nn

CARD_FILE = "card.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "medtransfer-model/1"


def is_model_dir(path: str | os.PathLike[str]) -> bool:
    """True when `path` is a folder with a ``card.json`` (a model folder, complete or not)."""
    return (Path(path) / CARD_FILE).is_file()


def is_complete_model_dir(path: str | os.PathLike[str]) -> bool:
    """True when `path` is a model folder with its weights file (a finished write)."""
    return is_model_dir(path) and weights_path(path).is_file()


def save_model_dir(path: str | os.PathLike[str], model: nn.Module, card: ModelCard,
                   record: dict[str, Any] | None = None) -> Path:
    """Write `model`'s weights and `card` (plus `record`) into the folder `path`; returns the folder.

    Both files are written to temporary names and renamed, the weights first, so a kill leaves either the old
    folder or the new one, never a card that points at half-written weights.
    """
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, folder / WEIGHTS_FILE)
    doc = {"format": FORMAT, "card": dataclasses.asdict(card), "record": record or {}}
    tmp = folder / (CARD_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    os.replace(tmp, folder / CARD_FILE)
    return folder


def read_model_dir(path: str | os.PathLike[str]) -> tuple[ModelCard, dict[str, Any]]:
    """The card and the training record of a model folder.

    Raises:
        CheckpointError: the folder has no card, the card is not valid JSON or not a medtransfer model card, or
            the weights file is missing.
    """
    folder = Path(path)
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise CheckpointError(f"{str(folder)!r} is not a model folder: it has no {CARD_FILE}. A model folder is what "
                              f"`medtransfer pretrain` or `medtransfer models convert` writes.")
    try:
        doc = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{str(card_path)!r} is not valid JSON ({e}); the folder may be damaged.") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("card"), dict):
        raise CheckpointError(f"{str(card_path)!r} is not a medtransfer model card (expected format {FORMAT!r}).")
    if not (folder / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"Model folder {str(folder)!r} has a card but no {WEIGHTS_FILE}; the run that wrote it "
                              f"did not finish. Run it again (it resumes).")
    try:
        card = from_dict(ModelCard, doc["card"], where=f"model card {str(card_path)!r}")
    except MedtransferError as e:
        raise CheckpointError(str(e)) from e
    return card, dict(doc.get("record") or {})


def weights_path(path: str | os.PathLike[str]) -> Path:
    """The weights file of a model folder."""
    return Path(path) / WEIGHTS_FILE


def state_dict_of(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The weights of a model folder as a flat state dict."""
    from medtransfer.models.weights import read_state_dict

    return read_state_dict(weights_path(path))
