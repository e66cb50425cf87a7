from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import silhouette_score
from typer.testing import CliRunner

from medtransfer import models
from medtransfer.cli import app
from medtransfer.errors import ConfigError
from medtransfer.runner import GridSpec, ResultStore, load_spec, run_grid
from medtransfer.runner.analyses import _mean_ci, resolve_options, run_analysis

SMALL = {"phantom-organ-28": {"n": 60}}


def test_options_are_checked_with_the_choices() -> None:
    assert resolve_options("saliency", {"n_images": 2})["stride"] == 1
    with pytest.raises(ConfigError, match="Unknown analysis 'salency'.*Did you mean 'saliency'"):
        resolve_options("salency", {})
    with pytest.raises(ConfigError, match=r"Unknown option\(s\) \['windw'\]"):
        resolve_options("saliency", {"windw": 3})
    with pytest.raises(ConfigError, match="Unknown transform 'rotaton'"):
        resolve_options("invariance", {"transforms": ["rotaton"]})
    assert resolve_options("invariance", {"transforms": "h_flip"})["transforms"] == ["h_flip"]
    with pytest.raises(ConfigError, match="Unknown LPIPS"):
        resolve_options("inversion", {"lpips": ["resnet"]})
    with pytest.raises(ConfigError, match="'n_images'.*positive int"):
        resolve_options("saliency", {"n_images": 0})
    for options, match in (({"preset": "anton"}, "saliency preset"), ({"window": "3"}, "'window'"),
                           ({"baseline": "zero"}, "'baseline'")):
        with pytest.raises(ConfigError, match=match):
            resolve_options("saliency", options)
    with pytest.raises(ConfigError, match="'transforms'.*list"):
        resolve_options("invariance", {"transforms": 5})
    with pytest.raises(ConfigError, match="'view_pairs'"):
        resolve_options("invariance", {"view_pairs": "yes"})
    with pytest.raises(ConfigError, match="embedding method"):
        resolve_options("embedding", {"method": "mds"})


def test_mean_ci_by_hand() -> None:
    mean, lo, hi, n = _mean_ci(np.array([1.0, 2.0, 3.0, np.nan]), seed=0)
    assert mean == 2.0 and n == 3 and 1.0 <= lo <= 2.0 <= hi <= 3.0
    assert _mean_ci(np.array([5.0]), seed=0) == (5.0, None, None, 1)


def test_saliency_and_embedding_write_numbers_and_pictures(tmp_path: Path) -> None:
    model = models.create("test-cnn")
    sal = run_analysis("saliency", model, "phantom-organ-28", options={"n_images": 2, "stride": 3},
                       dataset_options=SMALL["phantom-organ-28"], figures=tmp_path / "s")
    assert [r.metric for r in sal.rows] == ["attentive_diffusion", "pointing"]
    assert Path(sal.files[0]).is_file() and sal.files[0].endswith("s-saliency.png")
    assert len(sal.extra["pointing"]) == 2 and 0 <= sal.rows[1].value <= 1
    emb = run_analysis("embedding", model, "phantom-organ-28", dataset_options=SMALL["phantom-organ-28"],
                       figures=tmp_path / "e")
    png, table = map(Path, emb.files)
    assert png.is_file() and table.suffix == ".csv"
    with open(table) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 60 and list(rows[0]) == ["row", "label", "x", "y"]  # n=60 applies to every split
    coords = np.array([[float(r["x"]), float(r["y"])] for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    assert emb.rows[0].metric == "silhouette_pca"
    assert emb.rows[0].value == pytest.approx(silhouette_score(coords, labels), abs=1e-4)


def test_invariance_and_inversion_rows() -> None:
    model = models.create("test-cnn")
    inv = run_analysis("invariance", model, "phantom-organ-28", options={"transforms": ["h_flip", "rotation"],
                       "k": 3, "n_images": 5}, dataset_options=SMALL["phantom-organ-28"])
    assert [r.metric for r in inv.rows] == ["invariance:h_flip", "mahalanobis:h_flip", "invariance:rotation",
                                            "mahalanobis:rotation"]
    assert inv.extra["k"] == {"h_flip": 2, "rotation": 3} and inv.extra["covariance_images"] == 60
    out = run_analysis("inversion", model, "phantom-organ-28", options={"iters": 3, "lpips": [], "size": 128,
                       "crop": 112}, dataset_options=SMALL["phantom-organ-28"])
    assert [r.metric for r in out.rows] == ["feature_mse"] and out.rows[0].value > 0
    with pytest.raises(ConfigError, match="3D"):
        run_analysis("inversion", models.create("resnet18-3d-small"), "phantom3d-organ-28", options={"lpips": []})


def test_analyses_in_a_grid_resume_and_fail_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    # no LPIPS backbone files, whatever this machine's torch hub cache holds
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: a\nmodels: [test-cnn]\ndatasets: [phantom-organ-28]\nprotocols: []\n"
        f"analyses: [saliency, embedding, inversion]\ndataset_options: {SMALL}\n"
        "analysis_options: {saliency: {n_images: 1, stride: 4}, inversion: {iters: 2, size: 128, crop: 112}}\n")
    store_path = tmp_path / "runs" / "a.sqlite"
    with ResultStore(store_path) as store:
        summary = run_grid(load_spec(spec), store)
        assert summary.done == 2 and len(summary.failed) == 1  # inversion: LPIPS weights absent here
        assert "alexnet-owt-7be5be79.pth" in summary.failed[0]
        cells = {c["protocol"]: c for c in store.cells()}
        assert cells["inversion"]["status"] == "failed" and cells["saliency"]["status"] == "done"
        rows = store.results(protocol="saliency")
        assert {r["metric"] for r in rows} == {"attentive_diffusion", "pointing"}
        figures = sorted(p.name for p in (tmp_path / "runs" / "a-figures").iterdir())
        assert any(n.endswith("-saliency.png") for n in figures) and any(n.endswith(".csv") for n in figures)
        again = run_grid(load_spec(spec), store)
        assert again.skipped == 2 and again.done == 0  # finished analyses are not recomputed


def test_spec_names_bad_analyses() -> None:
    with pytest.raises(ConfigError, match="analysis 'salency' is not one of"):
        run_grid(GridSpec(models=("test-cnn",), datasets=("phantom-organ-28",), protocols=(), analyses=("salency",)),
                 None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="analysis_options of 'saliency'.*windw"):
        run_grid(GridSpec(models=("test-cnn",), datasets=("phantom-organ-28",), analyses=("saliency",),
                          analysis_options={"saliency": {"windw": 2}}), None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="runs nothing"):
        run_grid(GridSpec(models=("test-cnn",), datasets=("phantom-organ-28",), protocols=()), None)  # type: ignore


def test_cli_analyze_json(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["analyze", "saliency", "n_images=1", "stride=5", "--model", "test-cnn",
                                   "--dataset", "phantom-organ-28", "--out", str(tmp_path), "--json"])
    assert out.exit_code == 0, out.output
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["analysis"] == "saliency" and record["results"][0]["metric"] == "attentive_diffusion"
    assert Path(record["json"]).is_file() and all(Path(f).is_file() for f in record["files"])
    bad = CliRunner().invoke(app, ["analyze", "saliency", "windw=3", "--model", "test-cnn", "--dataset",
                                   "phantom-organ-28"])
    assert bad.exit_code != 0 and "windw" in str(bad.exception)


def test_multi_view_invariance_on_phantom_view_pairs() -> None:
    model = models.create("test-cnn")
    out = run_analysis("invariance", model, "phantom-organ-28", options={"transforms": ["h_flip"], "n_images": 6,
                       "view_pairs": True}, dataset_options=SMALL["phantom-organ-28"])
    metrics = {r.metric: r.value for r in out.rows}
    assert -1 <= metrics["invariance:multi-view"] < 1 and metrics["mahalanobis:multi-view"] > 0
    with pytest.raises(ConfigError, match="declares no view pairs"):
        run_analysis("invariance", model, "breastmnist", options={"view_pairs": True, "transforms": ["h_flip"]},
                     data_root="/nonexistent")


def test_saliency_draws_images_that_hold_a_lesion() -> None:
    from medtransfer import data
    from medtransfer.runner.analyses import _with_region

    ds = data.load("phantom-binary-28", "test", n=40)
    index = _with_region(ds, 5, seed=0)
    assert len(index) == 5 and np.all(ds.labels[index] == 1)  # label 1: the image holds a lesion
    np.testing.assert_array_equal(index, _with_region(ds, 5, seed=0))
    assert len(_with_region(ds, 40, seed=0)) == 40  # fewer lesion images than asked: the seeded rows, all of them
