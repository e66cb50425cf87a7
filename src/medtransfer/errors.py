"""The error types a user of medtransfer can meet. Each message names the input, what was wrong and the fix."""

from __future__ import annotations


class MedtransferError(Exception):
    """Base class of every error medtransfer raises on purpose."""


class UnknownNameError(MedtransferError, KeyError):
    """A name (model, dataset, protocol, config key ...) that no registry holds."""

    def __str__(self) -> str:  # KeyError would repr() the message and show the quotes
        return str(self.args[0]) if self.args else ""


class ConfigError(MedtransferError, ValueError):
    """A configuration value of the wrong type or outside its allowed range."""


class DataError(MedtransferError, ValueError):
    """A dataset that is missing, corrupt, or does not match its card."""


class ChecksumError(DataError):
    """A file whose checksum differs from the pinned one."""


class DownloadError(DataError):
    """A file that could not be downloaded (offline, HTTP error); the message says where to put it by hand."""


class CheckpointError(MedtransferError, ValueError):
    """A checkpoint that cannot be loaded: wrong format, wrong architecture, missing or unexpected keys."""


class CellError(MedtransferError, RuntimeError):
    """A benchmark cell that failed; the message names model, dataset, protocol and seed."""


class TrainingError(MedtransferError, RuntimeError):
    """A training run that cannot go on: a NaN/infinite loss, a checkpoint of another run in its folder."""


class StoreError(MedtransferError, RuntimeError):
    """A results store that cannot be used: not SQLite, a newer schema, or a call out of order."""
