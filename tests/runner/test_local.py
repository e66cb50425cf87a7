from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medtransfer.errors import ConfigError
from medtransfer.runner import ResultStore, load_spec, run_grid

SMALL = {"phantom-binary-28": {"n": 120}, "phantom-organ-28": {"n": 120}}


def _spec(tmp_path: Path, seeds: str = "[0]", extra: str = "") -> Path:
    f = tmp_path / "spec.yaml"
    f.write_text(
        "name: t\nmodels: [test-cnn]\ndatasets: [phantom-binary-28, phantom-organ-28]\nprotocols: [linear]\n"
        f"seeds: {seeds}\ndataset_options: {SMALL}\n"
        "protocol_options: {linear: {C_grid: [0.01, 1.0], n_boot: 200}}\n" + extra
    )
    return f


def test_run_writes_rows_and_skips_done_cells(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    with ResultStore(tmp_path / "r.sqlite") as store:
        first = run_grid(spec, store)
        rows = store.results()
        second = run_grid(spec, store)
        assert store.results() == rows  # nothing rewritten
    assert (first.done, first.skipped, second.done, second.skipped) == (2, 0, 0, 2)
    assert {(r["dataset"], r["metric"]) for r in rows} == {
        (d, m) for d in SMALL for m in ("accuracy", "auc")}
    assert all(r["ci_low"] <= r["value"] <= r["ci_high"] for r in rows)


def test_force_recomputes_without_duplicates(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    with ResultStore(tmp_path / "r.sqlite") as store:
        run_grid(spec, store)
        n = len(store.results())
        assert run_grid(spec, store, force=True).done == 2
        assert len(store.results()) == n


def test_failing_cell_is_recorded_and_the_rest_runs(tmp_path: Path) -> None:
    # k = 500 is a valid setting, but more than the 84 training phantoms: only the cell can find that out
    spec = load_spec(_spec(tmp_path), ["protocols=[linear, knn]", "protocol_options.knn={k: 500}"])
    with ResultStore(tmp_path / "r.sqlite") as store:
        summary = run_grid(spec, store)
        failed = store.cells(status="failed")
    assert summary.done == 2 and len(summary.failed) == 2
    assert "model=test-cnn dataset=phantom-binary-28 protocol=knn seed=0 fraction=1.0" in summary.failed[0]
    assert "The 'k' parameter of knn must be an int in the range [1, n_train]" in failed[0]["error"]


def test_a_spec_with_bad_values_is_refused_before_anything_runs(tmp_path: Path) -> None:
    # every problem in one message, and no store file created (bench opens the store after load_spec)
    with pytest.raises(ConfigError) as info:
        load_spec(_spec(tmp_path), ["models=[test-cnn, no-such-model]", "seeds=[-1]", "protocols=[linear, knnn]",
                                    "protocol_options.linear={C_grd: [1]}", "dataset_options.phantom-binary-28={n: 0}"])
    message = str(info.value)
    assert message.startswith(f"The spec {str(tmp_path / 'spec.yaml')!r} has 5 problems; nothing was run.")
    for part in ("'seeds' parameter of GridSpec must hold ints in the range [0, 2^32 - 1]. Got [-1]",
                 "model 'no-such-model' is not a registered model", "protocol 'knnn' is not one of",
                 "Did you mean 'knn'?", "Unknown key 'C_grd' in linear-probe preset 'default'. Did you mean 'C_grid'?",
                 "The 'n' option of dataset 'phantom-binary-28' must be an int in the range [1, inf). Got 0"):
        assert part in message, part
    assert not (tmp_path / "r.sqlite").exists()


def test_run_grid_checks_a_spec_built_in_python(tmp_path: Path) -> None:
    spec = dataclasses.replace(load_spec(_spec(tmp_path)), seeds=(-3,), fractions=(0.0,))
    with ResultStore(tmp_path / "r.sqlite") as store, pytest.raises(ConfigError, match="has 2 problems"):
        run_grid(spec, store)
        assert store.cells() == []


def _done(path: Path) -> int:
    if not path.exists():
        return 0
    with ResultStore(path) as store:
        return len(store.done_cells())


@pytest.mark.timeout(240)
def test_resume_after_kill_loses_at_most_the_running_cell(tmp_path: Path) -> None:
    spec_path = _spec(tmp_path, seeds="[0, 1, 2, 3, 4, 5, 6, 7]", extra="batch_size: 16\n")
    db = tmp_path / "r.sqlite"
    cmd = [sys.executable, "-m", "medtransfer.cli", "bench", str(spec_path), "--store", str(db), "--json"]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while _done(db) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _done(db)
    assert 3 <= killed_at < 16, f"kill landed after {killed_at} of 16 cells; the test needs a mid-run kill"
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    with ResultStore(db) as store:
        rows = store.results()
        assert len(store.done_cells()) == 16
    keys = [(r["cell_id"], r["metric"], r["split"]) for r in rows]
    assert len(keys) == len(set(keys)) == 16 * 2  # every cell once, each with accuracy and auc
    with ResultStore(tmp_path / "uninterrupted.sqlite") as store:  # the same grid, never killed
        run_grid(load_spec(spec_path), store)
        expected = {(r["cell_id"], r["metric"]): (r["value"], r["ci_low"], r["ci_high"]) for r in store.results()}
    assert {(r["cell_id"], r["metric"]): (r["value"], r["ci_low"], r["ci_high"]) for r in rows} == expected


def test_label_fractions_subset_train_only(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path), ["fractions=[0.25, 1.0]", "datasets=[phantom-binary-28]"])
    with ResultStore(tmp_path / "r.sqlite") as store:
        run_grid(spec, store)
        cells = {c["fraction"]: c for c in store.cells(status="done")}
    assert cells[0.25]["extra"]["n_train"] == 30 and cells[1.0]["extra"]["n_train"] == 120


def test_frozen_cells_store_the_test_predictions_their_metrics_came_from(tmp_path: Path) -> None:
    from medtransfer.protocols.metrics import metric_value

    spec = load_spec(_spec(tmp_path), ["protocols=[linear, knn, fewshot]", "datasets=[phantom-organ-28]"])
    with ResultStore(tmp_path / "r.sqlite") as store:
        run_grid(spec, store)
        by_protocol = {c["protocol"]: c["cell_id"] for c in store.cells(status="done")}
        assert store.predictions(by_protocol["fewshot"]) is None  # its interval is over episodes, not images
        for protocol in ("linear", "knn"):
            preds = store.predictions(by_protocol[protocol])
            assert preds is not None and preds.task == "multi-class" and preds.n == 120
            for row in store.results(cell_id=by_protocol[protocol]):
                assert metric_value(row["metric"], preds.task, preds.y_true, preds.y_score) == row["value"]
