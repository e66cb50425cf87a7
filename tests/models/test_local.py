import dataclasses
import json

import pytest
import torch

from medtransfer.errors import CheckpointError
from medtransfer.models import create, read_model_dir, save_model_dir
from medtransfer.models.local import CARD_FILE, WEIGHTS_FILE


def _trained_copy() -> torch.nn.Module:
    model = create("test-cnn")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # weights that differ from the card's random init
    return model


def test_round_trip_gives_the_same_features(tmp_path):
    model = _trained_copy()
    card = dataclasses.replace(model.card, name="simclr-phantom", method="SimCLR", pretraining_data="phantom-binary")
    save_model_dir(tmp_path / "run", model, card, {"epochs": 3, "final_loss": 1.25})
    loaded = create(str(tmp_path / "run"))
    x = torch.rand(4, 3, 28, 28)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded.card == card
    assert read_model_dir(tmp_path / "run")[1] == {"epochs": 3, "final_loss": 1.25}
    assert not any(p.suffix == ".tmp" for p in (tmp_path / "run").iterdir())


def test_missing_weights_are_named(tmp_path):
    model = create("test-cnn")
    save_model_dir(tmp_path, model, model.card)
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        create(str(tmp_path))


def test_foreign_card_is_refused(tmp_path):
    (tmp_path / CARD_FILE).write_text(json.dumps({"name": "x"}))
    with pytest.raises(CheckpointError, match="not a medtransfer model card"):
        read_model_dir(tmp_path)
    (tmp_path / CARD_FILE).write_text("{oops")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_model_dir(tmp_path)


def test_card_with_an_unknown_field_names_it(tmp_path):
    model = create("test-cnn")
    save_model_dir(tmp_path, model, model.card)
    doc = json.loads((tmp_path / CARD_FILE).read_text())
    doc["card"]["colour"] = "red"
    (tmp_path / CARD_FILE).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="colour"):
        read_model_dir(tmp_path)
