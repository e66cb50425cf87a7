from __future__ import annotations

import pytest

from medtransfer import errors


def test_unknown_name_is_a_key_error_printed_without_quotes() -> None:
    e = errors.UnknownNameError("Unknown model 'x'.")
    assert isinstance(e, KeyError) and str(e) == "Unknown model 'x'."


@pytest.mark.parametrize("cls, base", [
    (errors.ConfigError, ValueError), (errors.DataError, ValueError), (errors.ChecksumError, errors.DataError),
    (errors.DownloadError, errors.DataError), (errors.CheckpointError, ValueError), (errors.CellError, RuntimeError),
    (errors.StoreError, RuntimeError),
])
def test_every_error_is_a_medtransfer_error_and_a_builtin(cls: type, base: type) -> None:
    assert issubclass(cls, errors.MedtransferError) and issubclass(cls, base)
