"""`bench --dry-run`: the cells a grid would run, and what they would cost, from the costs a store measured.

Nothing runs and nothing is written. A cell's estimate is the median duration of the finished cells in the store
that are most like it: same protocol, dataset and model; else same protocol and dataset; else same protocol;
else unknown. A frozen cell's duration is its protocol alone: each (model, dataset) pair's feature extraction
comes once on top, and is not in the figure.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtransfer.runner.store import Cell

GPU_PROTOCOLS = ("finetune", "segment", "saliency", "invariance", "inversion", "embedding")


@dataclass(frozen=True)
class Estimate:
    """One cell of a dry run."""

    cell: Cell
    status: str  # "done" (skipped unless --force), "todo", "failed" or "running" (both re-run)
    seconds: float | None  # None: the store has no finished cell like it
    basis: str  # what the estimate is the median of, e.g. "3 cells: linear on breastmnist"
    resource: str  # "GPU" (trained cells and analyses, where a GPU is available) or "CPU"


def store_history(path: Path) -> list[dict[str, Any]]:
    """The job table of the store at `path` (opened read-only), or [] when there is no store yet."""
    from medtransfer.runner.store import ResultStore

    if not path.is_file():
        return []
    store = ResultStore.open_read_only(path)
    try:
        return store.cells()
    finally:
        store.close()


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def estimate(cells: Iterable[Cell], history: Iterable[Mapping[str, Any]]) -> list[Estimate]:
    """Each cell's status in the store and its estimated seconds, from the store's job table (`store.cells()`)."""
    history = list(history)
    status = {h["cell_id"]: h["status"] for h in history}
    done = [h for h in history if h["status"] == "done" and h.get("duration_s") is not None]
    keys: tuple[tuple[str, ...], ...] = (("protocol", "dataset", "model"), ("protocol", "dataset"), ("protocol",))
    tables: list[dict[tuple[Any, ...], list[float]]] = []
    for key in keys:
        table: dict[tuple[Any, ...], list[float]] = {}
        for h in done:
            table.setdefault(tuple(h[k] for k in key), []).append(float(h["duration_s"]))
        tables.append(table)
    out = []
    for cell in cells:
        seconds, basis = None, "no finished cell of this protocol in the store"
        for key, table in zip(keys, tables, strict=True):
            found = table.get(tuple(getattr(cell, k) for k in key))
            if found:
                seconds = _median(found)
                basis = f"median of {len(found)} cells: " + " / ".join(str(getattr(cell, k)) for k in key)
                break
        out.append(Estimate(cell, status.get(cell.cell_id, "todo"), seconds, basis,
                            "GPU" if cell.protocol in GPU_PROTOCOLS else "CPU"))
    return out


def totals(estimates: Sequence[Estimate], *, force: bool = False) -> dict[str, Any]:
    """Cells to run, their known seconds, and how many have no estimate."""
    todo = [e for e in estimates if force or e.status != "done"]
    known = [e.seconds for e in todo if e.seconds is not None]
    return {"cells": len(estimates), "to_run": len(todo), "skipped": len(estimates) - len(todo),
            "estimated_s": round(sum(known), 1), "unknown": len(todo) - len(known),
            "gpu_cells": sum(e.resource == "GPU" for e in todo)}
