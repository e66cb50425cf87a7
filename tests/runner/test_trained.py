"""Trained (finetune) cells in a grid: label fractions x seeds, results and chosen steps in the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medtransfer.report import label_efficiency
from medtransfer.runner import ResultStore, load_spec, run_grid
from medtransfer.runner.trained import checkpoint_dir


def _spec(tmp_path: Path) -> Path:
    f = tmp_path / "spec.yaml"
    f.write_text(
        "name: t\nmodels: [test-cnn]\ndatasets: [phantom-binary-28]\nprotocols: [finetune, linear]\n"
        "seeds: [0, 1]\nfractions: [0.5, 1.0]\ndataset_options: {phantom-binary-28: {n: 60}}\n"
        "protocol_options: {finetune: {preset: medmnist, init: scratch, epochs: 2, batch_size: 16, n_boot: 20},"
        " linear: {C_grid: [1.0], n_boot: 20}}\n")
    return f


def test_finetune_cells_store_results_chosen_steps_and_curves(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    with ResultStore(tmp_path / "r.sqlite") as store:
        summary = run_grid(spec, store)
        assert summary.failed == [] and summary.done == 8  # 2 protocols x 2 fractions x 2 seeds
        done = store.cells(status="done")
        cells = [c for c in done if c["protocol"] == "finetune"]
        rows = store.results()
        again = run_grid(spec, store)  # a finished grid is not trained again
    assert again.done == 0 and again.skipped == 8
    assert len(cells) == 4
    for c in cells:
        chosen = c["extra"]["chosen"]
        assert chosen["best_step"] in [g["step"] for g in c["extra"]["grid"]]  # chosen on validation
        assert c["weights_sha256"] is None  # init: scratch
        assert not checkpoint_dir("finetune", c["cell_id"]).exists()  # removed once the cell is done
    # the finetune label budget draws the same rows as the frozen protocols' (label_subset, same seed)
    linear = {(c["seed"], c["fraction"]): c["extra"]["n_train"] for c in done if c["protocol"] == "linear"}
    trained = {(c["seed"], c["fraction"]): c["extra"]["n_train"] for c in cells}
    assert trained == linear and trained[(0, 0.5)] < trained[(0, 1.0)]
    curves = label_efficiency(rows, metric="auc")
    points = curves["test-cnn"]["phantom-binary-28"]
    assert [p.fraction for p in points] == [0.5, 1.0] and all(p.seeds == (0, 1) for p in points)
    values = [r["value"] for r in rows if r["protocol"] == "finetune" and r["metric"] == "auc" and r["fraction"] == 0.5]
    assert points[0].mean == np.mean(values) and points[0].std == np.std(values, ddof=1)


def test_cli_eval_finetune_prints_json_and_resumes_by_key(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from medtransfer.cli import app

    args = ["eval", "finetune", "--model", "test-cnn", "--dataset", "phantom-binary-28", "--init", "scratch",
            "--preset", "medmnist", "--fraction", "0.1", "--seed", "1", "steps=3", "batch_size=16", "n_boot=10",
            "--json"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    result = json.loads(out.output.strip().splitlines()[-1])
    assert result["protocol"] == "finetune" and result["chosen"]["init"] == "scratch"
    from medtransfer import data
    from medtransfer.data.splits import label_subset

    budget = label_subset(np.asarray(data.load("phantom-binary-28", "train").labels), fraction=0.1, seed=1)
    assert result["seed"] == 1 and result["n_train"] == len(budget)  # the frozen protocols' 10% subset
    assert result["chosen"]["stopped_step"] == 3
    assert not list((tmp_path / "home" / "runs" / "finetune").glob("cli-*"))  # the finished run left no checkpoint


def test_cli_init_is_refused_for_frozen_protocols() -> None:
    from typer.testing import CliRunner

    from medtransfer.cli import app

    out = CliRunner().invoke(app, ["eval", "linear", "--model", "test-cnn", "--dataset", "phantom-binary-28",
                                   "--init", "scratch"])
    assert out.exit_code != 0 and "--init applies to trained protocols" in str(out.exception)


def test_a_dataset_without_a_test_split_is_named(tmp_path: Path) -> None:
    import pytest
    from PIL import Image

    from medtransfer import models
    from medtransfer.errors import DataError
    from medtransfer.runner.trained import run_trained

    for split in ("train", "val"):
        for label in ("a", "b"):
            for k in range(3):
                (tmp_path / "imgs" / split / label).mkdir(parents=True, exist_ok=True)
                Image.new("L", (8, 8), 40 * k).save(tmp_path / "imgs" / split / label / f"{k}.png")
    with pytest.raises(DataError, match="has no test split"):
        run_trained("finetune", models.create("test-cnn"), str(tmp_path / "imgs"), seed=0, options={"steps": 1})


def test_segment_cells_in_a_mixed_grid_with_budgets_and_overlays(tmp_path: Path) -> None:
    # one spec, a segmentation and a classification phantom: segment runs on the first only, linear on the second
    f = tmp_path / "spec.yaml"
    f.write_text("name: s\nmodels: [test-cnn]\ndatasets: [phantom-seg-lesion-28, phantom-binary-28]\n"
                 "protocols: [segment, linear]\nfractions: [0.5, 1.0]\n"
                 "dataset_options: {phantom-seg-lesion-28: {n: 24}, phantom-binary-28: {n: 40}}\n"
                 "protocol_options: {segment: {steps: 2, batch_size: 4, n_boot: 10}, linear: {n_boot: 10}}\n")
    with ResultStore(tmp_path / "r.sqlite") as store:
        summary = run_grid(load_spec(f), store)
        cells = store.cells(status="done")
        rows = store.results()
    assert summary.failed == [] and summary.done == 4
    assert {(c["protocol"], c["dataset"]) for c in cells} == {("segment", "phantom-seg-lesion-28"),
                                                              ("linear", "phantom-binary-28")}
    seg = {c["fraction"]: c for c in cells if c["protocol"] == "segment"}
    assert seg[0.5]["extra"]["n_train"] < seg[1.0]["extra"]["n_train"]  # the label budget takes fewer images
    assert {r["metric"] for r in rows if r["protocol"] == "segment"} == {"dice", "iou", "dice/lesion", "iou/lesion"}
    figures = sorted((tmp_path / "r-figures").glob("*-segment.png"))
    assert [p.name for p in figures] == sorted(f"{c['cell_id']}-segment.png" for c in seg.values())


def test_cli_eval_segment_json_holds_dice_iou_their_cis_and_the_figure(tmp_path: Path, monkeypatch) -> None:
    import json

    from typer.testing import CliRunner

    from medtransfer.cli import app

    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(app, ["eval", "segment", "--model", "test-cnn", "--dataset", "phantom-seg-organs-28",
                                   "steps=2", "batch_size=4", "n_boot=10", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output.strip().splitlines()[-1])
    assert {"dice", "iou"} <= set(result["metrics"]) and {"dice", "iou"} <= set(result["ci"])
    assert (tmp_path / result["figures"]).is_file()
