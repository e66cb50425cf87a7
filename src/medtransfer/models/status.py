"""Where a zoo model's files live on this machine, and whether they are there.

Kept free of torch so that `medtransfer models list` answers at once; `models.hub` re-exports these.
"""

from __future__ import annotations

from pathlib import Path

from medtransfer.config import home
from medtransfer.models.card import ModelCard
from medtransfer.models.local import is_complete_model_dir


def published_file(card: ModelCard) -> Path:
    """Where the card's original published file is kept (downloaded, or placed there by hand)."""
    return home() / "downloads" / (card.filename or card.name)


def converted_dir(name: str) -> Path:
    """The model folder a converted zoo model is stored in."""
    return home() / "models" / name


def is_converted(name: str) -> bool:
    """True when the zoo model `name` has been fetched or converted onto this machine."""
    return is_complete_model_dir(converted_dir(name))


def weights_status(card: ModelCard) -> str:
    """One word for `models list`: ``on disk``, ``fetch`` (downloadable), ``manual`` or ``-`` (random init)."""
    if not card.published:
        return "-"
    if is_converted(card.name):
        return "on disk"
    return "fetch" if card.url else "manual"
