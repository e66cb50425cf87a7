"""Running a benchmark grid: cells, the results store, executors."""

from __future__ import annotations

from medtransfer.runner.local import RunSummary, run_grid
from medtransfer.runner.spec import GridSpec, default_spec_path, expand, load_spec
from medtransfer.runner.store import Cell, Predictions, ResultRow, ResultStore

__all__ = ["Cell", "GridSpec", "Predictions", "ResultRow", "ResultStore", "RunSummary", "default_spec_path", "expand", "load_spec",
           "run_grid"]
