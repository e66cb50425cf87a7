"""A spec's pretraining step runs before the grid and its model enters the grid by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtransfer.errors import ConfigError
from medtransfer.models import read_model_dir
from medtransfer.runner import ResultStore, expand, load_spec, run_grid
from medtransfer.runner.pretraining import model_source, step_folder, with_folders

STEP = ("pretrain: [{name: simclr-tiny, method: simclr, dataset: phantom-binary-28, model: test-cnn, epochs: 1, "
        "batch_size: 16, samples: 32, dataset_options: {n: 32}, options: {hidden_dim: 16, out_dim: 8}}]\n")


def _spec(tmp_path: Path, step: str = STEP) -> Path:
    f = tmp_path / "spec.yaml"
    f.write_text("name: t\nmodels: [simclr-tiny, test-cnn]\ndatasets: [phantom-binary-28]\nprotocols: [linear]\n"
                 "dataset_options: {phantom-binary-28: {n: 60}}\n"
                 "protocol_options: {linear: {C_grid: [1.0], n_boot: 50}}\n" + step)
    return f


def test_pretrained_model_enters_the_grid_by_name(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    assert model_source(spec, "simclr-tiny") == str(Path("runs") / "simclr-tiny")  # outside run_grid
    assert model_source(spec, "test-cnn") == "test-cnn"
    with ResultStore(tmp_path / "store" / "r.sqlite") as store:
        summary = run_grid(spec, store)
        rows = store.results()
    assert summary.failed == [] and summary.done == 2
    assert {r["model"] for r in rows} == {"simclr-tiny", "test-cnn"}
    folder = tmp_path / "store" / "simclr-tiny"  # run_grid writes the step's model beside the store
    assert step_folder(with_folders(spec, tmp_path / "store").pretrain[0]) == folder
    _, record = read_model_dir(folder)
    assert record["method"] == "simclr" and record["epochs"] == 1
    # the step's recipe keys its cells: another recipe is another cell
    cells = {c.model: c for c in expand(spec, precision="fp32")}
    other = load_spec(_spec(tmp_path, STEP.replace("epochs: 1", "epochs: 2")))
    assert cells["simclr-tiny"].config["pretrain"]["epochs"] == 1
    assert {c.model: c for c in expand(other, precision="fp32")}["simclr-tiny"].cell_id != cells["simclr-tiny"].cell_id
    assert "pretrain" not in cells["test-cnn"].config
    # where the model is written does not change what the cell is
    moved = {c.model: c for c in expand(with_folders(spec, tmp_path / "elsewhere"), precision="fp32")}
    assert moved["simclr-tiny"].cell_id == cells["simclr-tiny"].cell_id


def test_a_failing_step_is_reported_and_the_rest_of_the_grid_runs(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, STEP.replace("method: simclr", "method: simclear")))
    with ResultStore(tmp_path / "r.sqlite") as store:
        summary = run_grid(spec, store)
    assert any("pretrain step 'simclr-tiny'" in m and "simclr" in m for m in summary.failed)
    assert summary.done == 1  # test-cnn's cell


@pytest.mark.parametrize(("step", "match"), [
    ("pretrain: [{method: simclr, dataset: phantom-binary-28}]\n", "needs the keys name, method and dataset"),
    ("pretrain: [{name: a, method: simclr, dataset: d}, {name: a, method: rpl, dataset: d}]\n", "distinct names"),
])
def test_bad_steps_raise_with_an_example(tmp_path: Path, step: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_spec(_spec(tmp_path, step))


def test_a_changed_recipe_that_cannot_run_fails_its_cells_instead_of_scoring_the_old_model(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store:
        run_grid(load_spec(_spec(tmp_path, STEP)), store)
        # same folder, another recipe: pretrain() refuses to overwrite the folder, so nothing new is made
        summary = run_grid(load_spec(_spec(tmp_path, STEP.replace("epochs: 1", "epochs: 2"))), store)
        failed = store.cells(status="failed")
    assert summary.done == 0 and [c["model"] for c in failed] == ["simclr-tiny"]
    assert any("another config" in m for m in summary.failed)
