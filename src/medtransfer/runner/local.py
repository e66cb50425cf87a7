"""Run a grid on this machine: extract each (model, dataset) pair's features once, run every cell, store rows."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from medtransfer import data as mdata
from medtransfer._progress import say
from medtransfer.analysis import ANALYSES
from medtransfer.data.splits import label_subset
from medtransfer.errors import CellError, ConfigError
from medtransfer.features import FeatureSet, default_device, extract, use_bf16
from medtransfer.models import create, weights_sha256
from medtransfer.protocols import PROTOCOLS, ClassificationResult, Features
from medtransfer.runner.pretraining import model_source, run_pretraining, with_folders
from medtransfer.runner.spec import GridSpec, check_spec, expand, mismatched_pairs, protocol_mismatches
from medtransfer.runner.store import Cell, Predictions, ResultRow, ResultStore
from medtransfer.runner.trained import TRAINED_PROTOCOLS, run_trained

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What one `run_grid` call did."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: list[str] = field(default_factory=list)


def precision_for(spec: GridSpec) -> str:
    """"bf16" or "fp32": what extraction for `spec` will use on this machine."""
    return "bf16" if use_bf16(spec.bf16, default_device()) else "fp32"


def grouped(cells: Iterable[Cell]) -> dict[tuple[str, str], list[Cell]]:
    """Cells by (model, dataset), in grid order: each pair's model is built and its features extracted once."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.model, cell.dataset), []).append(cell)
    return groups


def pair_features(spec: GridSpec, model_name: str, dataset_name: str, *, progress: bool, precision: str,
                  model: nn.Module | None = None) -> tuple[dict[str, FeatureSet], mdata.DatasetCard]:
    """Features of every split of one dataset under one model (cached on disk); `model` reuses a built one."""
    model = model if model is not None else create(model_source(spec, model_name))
    card = mdata.get_card(dataset_name)
    options = spec.dataset_options.get(dataset_name, {})
    feats = {}
    for split in (s for s in ("train", "val", "test") if s in card.splits):
        ds = mdata.load(dataset_name, split, data_root=spec.data_root, **options)
        feats[split] = extract(model, ds, batch_size=spec.batch_size, bf16=precision == "bf16",
                               input_size=spec.input_size, progress=progress)
    return feats, card


def result_rows(result: ClassificationResult) -> list[ResultRow]:
    """One store row per reported test metric, with its 95% interval."""
    return [ResultRow(metric=name, split="test", value=value, ci_low=result.ci[name][0],
                      ci_high=result.ci[name][1], n=result.n_test) for name, value in result.metrics.items()]


def cell_predictions(result: ClassificationResult, task: str) -> Predictions | None:
    """The per-sample test predictions a result carries, for the store; None for a protocol without them."""
    if result.y_true is None or result.y_score is None:
        return None
    return Predictions(task, result.y_true, result.y_score)


def run_protocol(protocol: str, feats: dict[str, FeatureSet], card: mdata.DatasetCard, *, seed: int,
                 fraction: float | None = None, per_class: int | None = None,
                 options: dict | None = None) -> ClassificationResult:
    """Run one protocol on one pair's features, with an optional label budget on train (val stays whole)."""
    if card.task == "segmentation":
        raise ConfigError(f"Dataset {card.name!r} is a segmentation dataset (masks, no class labels): {protocol} "
                          "needs class labels. Use the segment protocol.")
    splits = {name: Features(fs.x, fs.y) for name, fs in feats.items()}
    if per_class is not None or (fraction is not None and fraction < 1.0):
        keep = label_subset(splits["train"].y, fraction=fraction if per_class is None else None,
                            per_class=per_class, seed=seed)
        splits["train"] = splits["train"].subset(keep)
    # the card's headline metric first: protocols that select hyper-parameters select on the first metric
    metrics = (card.default_metric, *(m for m in card.metrics if m != card.default_metric))
    return PROTOCOLS.get(protocol)(splits, task=card.task, metrics=metrics, seed=seed, options=options or {})


@dataclass
class CellOutcome:
    """What one cell computed, ready for `ResultStore.finish`: every executor stores exactly this."""

    rows: list[ResultRow]
    extra: dict[str, Any]
    predictions: Predictions | None = None
    weights_sha256: str | None = None
    compute_s: float | None = None  # measured where it ran (a Ray task); None: the store times it


def frozen_outcome(cell: Cell, feats: dict[str, FeatureSet], card: mdata.DatasetCard) -> CellOutcome:
    """A frozen-feature cell (linear, kNN, few-shot) on its pair's features."""
    result = run_protocol(cell.protocol, feats, card, seed=cell.seed, fraction=cell.fraction,
                          options=cell.config["protocol_options"])
    sha = next(iter(feats.values())).meta["weights_sha256"]  # every split has the same model
    return CellOutcome(result_rows(result), {"chosen": result.chosen, "grid": result.grid, "n_train": result.n_train},
                       cell_predictions(result, card.task), sha)


def image_outcome(spec: GridSpec, cell: Cell, model: nn.Module, figures: Path | None, *,
                  progress: bool) -> CellOutcome:
    """A cell that trains on or looks at images (finetune, segment, the analyses); its pictures go to `figures`
    (`figure_path`)."""
    if cell.protocol in ANALYSES:
        from medtransfer.runner.analyses import run_analysis

        out = run_analysis(cell.protocol, model, cell.dataset, seed=cell.seed,
                           options=cell.config["analysis_options"], data_root=spec.data_root,
                           dataset_options=spec.dataset_options.get(cell.dataset, {}), figures=figures,
                           progress=progress, batch_size=spec.batch_size, input_size=spec.input_size)
        return CellOutcome(out.rows, {"analysis": out.extra, "files": out.files}, None, weights_sha256(model))
    result = run_trained(cell.protocol, model, cell.dataset, seed=cell.seed, fraction=cell.fraction,
                         options=cell.config["protocol_options"], data_root=spec.data_root,
                         dataset_options=spec.dataset_options.get(cell.dataset, {}), cell_id=cell.cell_id,
                         progress=progress, figures=figures)
    scratch = result.chosen.get("init") == "scratch"
    return CellOutcome(result_rows(result), {"chosen": result.chosen, "grid": result.grid, "n_train": result.n_train},
                       cell_predictions(result, mdata.get_card(cell.dataset).task),
                       None if scratch else weights_sha256(model))  # None: trained from random init


def store_outcome(store: ResultStore, cell: Cell, outcome: CellOutcome) -> None:
    """Write a finished cell (one transaction)."""
    store.finish(cell.cell_id, outcome.rows, weights_sha256=outcome.weights_sha256, extra=outcome.extra,
                 predictions=outcome.predictions, duration_s=outcome.compute_s)


def _describe(cell: Cell) -> str:
    return (f"model={cell.model} dataset={cell.dataset} protocol={cell.protocol} seed={cell.seed} "
            f"fraction={cell.fraction}")


def _start(store: ResultStore, cell: Cell, summary: RunSummary) -> None:
    """Mark `cell` running, with a progress line (logs and pipes) counting it among the grid's cells."""
    store.start(cell)
    say("cell %d/%d: %s", summary.skipped + summary.done + len(summary.failed) + 1, summary.total, _describe(cell))


def fail_cells(store: ResultStore, cells: list[Cell], error: BaseException, summary: RunSummary) -> None:
    """Record `error` (with its traceback) as the failure of each of `cells`."""
    for cell in cells:
        message = f"{CellError(_describe(cell))}: {type(error).__name__}: {error}"
        log.error("%s", message)
        if store.status(cell.cell_id) != "running":  # failed before it could start (e.g. its features)
            store.start(cell)
        store.fail(cell.cell_id, message + "\n" + "".join(traceback.format_exception(error)))
        summary.failed.append(message)


def figure_path(store: ResultStore | Path, cell: Cell) -> Path | None:
    """Where a cell's figure goes, beside the store (``runs/x-figures/<cell_id>-segment.png``; an analysis writes
    ``<cell_id>-saliency.png`` and the like from the prefix ``runs/x-figures/<cell_id>``); None if it has none.

    `store` is the store or its path (an executor's worker passes a path in its own scratch folder)."""
    path = Path(store.path if isinstance(store, ResultStore) else store)
    if cell.protocol in ANALYSES:
        return path.parent / f"{path.stem}-figures" / cell.cell_id
    if cell.protocol != "segment":
        return None
    return path.parent / f"{path.stem}-figures" / f"{cell.cell_id}-{cell.protocol}.png"


def _run_trained_cells(spec: GridSpec, store: ResultStore, cells: list[Cell],
                       built: tuple[str | None, nn.Module | None], summary: RunSummary, *,
                       progress: bool) -> tuple[str | None, nn.Module | None]:
    """Run trained and analysis cells (one model, one dataset) one by one, on images; returns the (name, model)
    built for them."""
    for cell in cells:
        _start(store, cell, summary)
        try:
            if built[0] != cell.model:
                built = (cell.model, create(model_source(spec, cell.model)))
            assert built[1] is not None, "a model was just built"
            outcome = image_outcome(spec, cell, built[1], figure_path(store, cell), progress=progress)
        except Exception as e:  # noqa: BLE001 - recorded in the store with its traceback
            fail_cells(store, [cell], e, summary)
            continue
        store_outcome(store, cell, outcome)
        summary.done += 1
    return built


@dataclass
class GridPlan:
    """A checked grid against a store: what to run (`todo`, in grid order) and the summary it starts from."""

    spec: GridSpec
    precision: str
    todo: list[Cell]
    summary: RunSummary


def plan_grid(spec: GridSpec, store: ResultStore, *, force: bool = False) -> GridPlan:
    """Check `spec` (every problem at once, before anything runs), expand it and leave out the cells `store`
    holds already (none with `force`); the spec comes back with its pretraining folders beside the store."""
    check_spec(spec)  # load_spec did it for files; a spec built in Python is checked here
    precision = precision_for(spec)
    cells = expand(spec, precision=precision)
    if mismatched := mismatched_pairs(spec):
        log.warning("Not run, the model and dataset dims differ: %s", "; ".join(mismatched))
    if mismatched := protocol_mismatches(spec):
        log.warning("Not run, the protocol does not fit the dataset's task: %s", "; ".join(mismatched))
    done = set() if force else store.done_cells()
    summary = RunSummary(total=len(cells), skipped=sum(c.cell_id in done for c in cells))
    say("grid %r: %d cells, %d already in %s", spec.name, summary.total, summary.skipped, store.path)
    spec = with_folders(spec, Path(store.path).parent)  # pretrained models live beside the store
    return GridPlan(spec, precision, [c for c in cells if c.cell_id not in done], summary)


def on_images(cell: Cell) -> bool:
    """Whether a cell trains on or looks at images (its own data path) rather than scoring frozen features."""
    return cell.protocol in (*TRAINED_PROTOCOLS, *ANALYSES)


def run_grid(spec: GridSpec, store: ResultStore, *, force: bool = False, progress: bool = False) -> RunSummary:
    """Run every cell of `spec` that `store` does not already hold (all of them with `force`).

    Each finished cell is written in one transaction the moment it finishes, so a kill loses at most the
    running cell. A failing cell is recorded with its error and the run goes on.

    Examples:
        >>> with ResultStore("runs/default.sqlite") as store:
        ...     summary = run_grid(load_spec(), store)
    """
    plan = plan_grid(spec, store, force=force)
    spec, precision, summary = plan.spec, plan.precision, plan.summary
    unmade = run_pretraining(spec, progress=progress)  # before the grid: its models enter by name
    built: tuple[str | None, nn.Module | None] = (None, None)
    for (model_name, dataset_name), group in grouped(plan.todo).items():
        if model_name in unmade:  # its pretraining failed: never score an older model in the folder instead
            fail_cells(store, group, CellError(unmade[model_name]), summary)
            continue
        trained = [c for c in group if on_images(c)]
        group = [c for c in group if not on_images(c)]
        if trained:
            built = _run_trained_cells(spec, store, trained, built, summary, progress=progress)
        if not group:
            continue
        try:
            if built[0] != model_name:  # cells come model by model: build each model (and hash its weights) once
                built = (model_name, create(model_source(spec, model_name)))
            feats, card = pair_features(spec, model_name, dataset_name, progress=progress, precision=precision,
                                        model=built[1])
        except Exception as e:  # noqa: BLE001 - a broken pair fails its cells; the rest of the grid still runs
            fail_cells(store, group, e, summary)
            continue
        for cell in group:
            _start(store, cell, summary)
            try:
                outcome = frozen_outcome(cell, feats, card)
            except Exception as e:  # noqa: BLE001 - recorded in the store with its traceback
                fail_cells(store, [cell], e, summary)
                continue
            store_outcome(store, cell, outcome)
            summary.done += 1
    say("grid done: %d cells run, %d already in the store, %d failed", summary.done, summary.skipped,
        len(summary.failed))
    return summary
