"""Where a zoo model's files live, and the one word `models list` shows for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtransfer.models import MODELS, create
from medtransfer.models.local import save_model_dir
from medtransfer.models.status import converted_dir, is_converted, published_file, weights_status


def test_paths_and_status_follow_the_files_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDTRANSFER_HOME", str(tmp_path))
    card = MODELS.get("moco-v2")
    assert converted_dir("moco-v2") == tmp_path / "models" / "moco-v2"
    assert published_file(card).parent == tmp_path / "downloads"
    assert weights_status(card) == ("fetch" if card.url else "manual") and not is_converted("moco-v2")
    folder = converted_dir("moco-v2")
    folder.mkdir(parents=True)
    (folder / "card.json").write_text("{}")  # a card without weights: an unfinished write, not converted
    assert not is_converted("moco-v2")
    save_model_dir(folder, create("test-cnn"), MODELS.get("test-cnn"))
    assert is_converted("moco-v2") and weights_status(card) == "on disk"
    assert weights_status(MODELS.get("resnet18-small")) == "-"  # random init: nothing to fetch
