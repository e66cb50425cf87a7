"""Running a benchmark grid: cells, the results store, executors.

The executors import torch (seconds); each name below loads its module on first use, so that the store
(`medtransfer.runner.store`, the standard library and numpy) serves exports and the report without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medtransfer.registry import lazy_attributes

if TYPE_CHECKING:
    from medtransfer.runner.local import RunSummary, run_grid
    from medtransfer.runner.spec import GridSpec, default_spec_path, expand, load_spec
    from medtransfer.runner.store import Cell, Predictions, ResultRow, ResultStore

_LAZY = {"RunSummary": "local", "run_grid": "local", "GridSpec": "spec", "default_spec_path": "spec",
         "expand": "spec", "load_spec": "spec", "Cell": "store", "Predictions": "store", "ResultRow": "store",
         "ResultStore": "store"}

__all__ = ["Cell", "GridSpec", "Predictions", "ResultRow", "ResultStore", "RunSummary", "default_spec_path", "expand",
           "load_spec", "run_grid"]

__getattr__ = lazy_attributes(__name__, _LAZY)
