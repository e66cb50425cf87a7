"""Dry-run estimates: the median of the most similar finished cells, statuses from the store, honest unknowns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from medtransfer.runner.estimate import estimate, totals
from medtransfer.runner.store import Cell


def _h(cell_id: str, protocol: str, dataset: str, model: str, seconds: float, status: str = "done") -> dict:
    return {"cell_id": cell_id, "protocol": protocol, "dataset": dataset, "model": model, "duration_s": seconds,
            "status": status}


def test_the_closest_history_gives_the_estimate() -> None:
    history = [_h("a", "linear", "d1", "m1", 2.0), _h("b", "linear", "d1", "m1", 4.0),
               _h("c", "linear", "d1", "m2", 30),
               _h("d", "linear", "d2", "m3", 10.0), _h("e", "knn", "d1", "m1", 99, status="failed")]
    cells = [Cell("a", "m1", "d1", "linear", 0), Cell("x", "m9", "d1", "linear", 1), Cell("y", "m9", "d9", "linear", 2),
             Cell("e", "m1", "d1", "knn", 0), Cell("z", "m1", "d1", "finetune", 0)]
    a, x, y, e, z = estimate(cells, history)
    assert (a.status, a.seconds) == ("done", 3.0) and "median of 2 cells" in a.basis  # same protocol/dataset/model
    assert x.seconds == 4.0 and x.status == "todo"  # same protocol and dataset: median of 2, 4, 30
    assert y.seconds == 7.0 and y.basis == "median of 4 cells: linear"  # protocol only: median of 2, 4, 10, 30
    assert e.status == "failed" and e.seconds is None  # a failed cell's duration is no estimate
    assert z.seconds is None and z.resource == "GPU" and a.resource == "CPU"
    t = totals([a, x, y, e, z])
    assert t == {"cells": 5, "to_run": 4, "skipped": 1, "estimated_s": 11.0, "unknown": 2, "gpu_cells": 1}
    assert totals([a, x, y, e, z], force=True)["to_run"] == 5


def test_cli_dry_run_runs_nothing_and_writes_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\nmodels: [test-cnn]\ndatasets: [phantom-binary-28]\nprotocols: [linear, knn]\n")
    out = subprocess.run([sys.executable, "-m", "medtransfer.cli", "bench", str(spec), "--store",
                          str(tmp_path / "r.sqlite"), "--executor", "ray", "--dry-run", "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["executor"] == "ray" and plan["to_run"] == plan["cells"] == 2 and plan["unknown"] == 2
    assert not (tmp_path / "r.sqlite").exists()
