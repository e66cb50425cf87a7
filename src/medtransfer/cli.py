"""The `medtransfer` command: parses arguments, calls the library, prints. No logic of its own."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from medtransfer.errors import ConfigError, MedtransferError

if TYPE_CHECKING:  # the heavy stack (torch, Lightning, MONAI ...) is imported only by the commands that use it
    from medtransfer.protocols.base import ClassificationResult
    from medtransfer.runner.local import RunSummary
    from medtransfer.runner.spec import GridSpec
    from medtransfer.runner.store import ResultStore
    from medtransfer.runner.studies import Study

app = typer.Typer(help="Which pretrained model to start from for a medical-imaging task, how much it helps, why.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
datasets_app = typer.Typer(help="Datasets: list, info, unpack.", no_args_is_help=True)
models_app = typer.Typer(help="Models: list, info, fetch, convert.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
app.add_typer(models_app, name="models")
results_app = typer.Typer(help="Results stores: show, export.", no_args_is_help=True)
app.add_typer(results_app, name="results")
# Piped output (CI logs, files) has no terminal width; 160 columns keep the results table on one line per row,
# and progress bars are drawn only on a terminal.
console = Console(width=None if sys.stdout.isatty() else 160)

DataRoot = Annotated[Path | None, typer.Option(help="Dataset folder (default $MEDTRANSFER_DATA or ~/.medmnist).")]
# A user checkpoint as --model FILE: its architecture and source format (medtransfer.models.convert.CONVERTERS).
ArchOpt = Annotated[str | None, typer.Option(help="--model is a checkpoint file of this architecture, e.g. resnet50")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="its source format: torchvision, moco, swav, dino ...")]
TrustOpt = Annotated[bool, typer.Option(help="allow a full unpickle of this file (can run code; BYOL .pkl needs it)")]


def _bars(as_json: bool = False) -> bool:
    """Progress bars on a terminal; otherwise (a log file, a pipe, --json) progress lines on stderr."""
    bars = console.is_terminal and not as_json
    if not bars:
        from medtransfer import _progress

        _progress.enable()
    return bars


def _kv_table(title: str, items: dict[str, object]) -> Table:
    table = Table(title=title, show_header=False)
    for k, v in items.items():
        table.add_row(k, str(v))
    return table


@datasets_app.command("list")
def datasets_list(pattern: Annotated[str, typer.Argument(help="fnmatch pattern, e.g. '*mnist-64'")] = "*") -> None:
    """List registered datasets."""
    from medtransfer.data import DATASETS

    table = Table("name", "task", "classes", "dims", "size", "source")
    for name in DATASETS.names(pattern):
        c = DATASETS.get(name).card
        table.add_row(name, c.task, str(c.num_classes), f"{c.dims}D", str(c.image_size or "varies"), c.source[:50])
    console.print(table)


@datasets_app.command("info")
def datasets_info(name: str) -> None:
    """Show a dataset's card."""
    from medtransfer.data import get_card

    card = dataclasses.asdict(get_card(name))
    console.print(_kv_table(name, {k: v for k, v in card.items() if v not in ("", {}, None)}))


@datasets_app.command("check")
def datasets_check(name: str, data_root: DataRoot = None,
                   as_json: Annotated[bool, typer.Option("--json", help="print the counts as JSON")] = False) -> None:
    """Validate a copy of a dataset without running a model: every split loads (layout, CSV columns, label
    values, listed images), counts per split and class beside the published counts, no patient in two splits."""
    from medtransfer.data import get_card, load
    from medtransfer.data.labelled import counts, leaking_groups

    card = get_card(name)
    splits = {s: load(name, s, data_root=data_root) for s in card.splits}
    table = {s: {} if card.task == "segmentation" else counts(ds) for s, ds in splits.items()}
    grouped = [ds for ds in splits.values() if getattr(ds, "groups", None) is not None]
    leaks = sorted(leaking_groups(grouped)) if grouped else []
    report = {"dataset": name, "splits": {s: {"images": len(ds), "per_class": table[s]} for s, ds in splits.items()},
              "published_counts": card.extra.get("published_counts"), "patients_in_two_splits": leaks[:20],
              "n_patients_in_two_splits": len(leaks)}
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        out = Table("split", "images", *card.label_names, title=f"{name}: {data_root or 'default data root'}")
        for s, ds in splits.items():
            out.add_row(s, str(len(ds)), *(str(table[s].get(c, "-")) for c in card.label_names))
        console.print(out)
        if report["published_counts"]:
            console.print(f"published counts: {report['published_counts']}")
        console.print(f"patients in two splits: {len(leaks)}" + (f" (e.g. {leaks[:5]})" if leaks else ""))
    if leaks:
        raise typer.Exit(1)


@datasets_app.command("unpack-mednist")
def datasets_unpack_mednist(src: Path, data_root: DataRoot = None) -> None:
    """Unpack a MedNIST subset .npz (e.g. ../shared/data/mednist/mednist_subset.npz) into <data-root>/MedNIST."""
    from medtransfer.data import default_data_root
    from medtransfer.data.mednist import unpack_subset

    out = unpack_subset(src, default_data_root(data_root))
    console.print(f"unpacked to {out}")


@models_app.command("list")
def models_list(pattern: Annotated[str, typer.Argument(help="fnmatch pattern, e.g. 'resnet*'")] = "*",
                show_all: Annotated[bool, typer.Option("--all", help="also the internal test-* models")] = False
                ) -> None:
    """List registered models."""
    from medtransfer.models import MODELS
    from medtransfer.models.status import weights_status
    from medtransfer.models.zoo import is_internal

    table = Table("name", "arch", "dim", "input", "method", "pretraining data", "weights")
    for name in MODELS.names(pattern):
        if is_internal(name) and not show_all:
            continue
        c = MODELS.get(name)
        table.add_row(name, c.arch, str(c.feature_dim), str(c.input.input_size or "native"), c.method,
                      c.pretraining_data, weights_status(c))
    console.print(table)


@models_app.command("info")
def models_info(name: str) -> None:
    """Show a model's card."""
    from medtransfer.models import MODELS
    from medtransfer.models.hub import converted_dir, how_to_get, weights_status

    card = MODELS.get(name)
    items = {k: v for k, v in dataclasses.asdict(card).items() if v not in ("", None)}
    if card.published:
        status = weights_status(card)
        items["weights"] = f"on disk: {converted_dir(name)}" if status == "on disk" else how_to_get(card)
    console.print(_kv_table(name, items))


@models_app.command("fetch")
def models_fetch(name: str, trust: TrustOpt = False,
                 force: Annotated[bool, typer.Option(help="convert again even if on disk")] = False) -> None:
    """Download a zoo model's published weights (resumes), verify the sha256, convert and store them."""
    from medtransfer.models.hub import fetch

    console.print(f"{name}: {fetch(name, trust=trust, force=force, progress=_bars())}")


@models_app.command("convert")
def models_convert(name: str,
                   src: Annotated[Path, typer.Option("--from", help="the published file (or TF checkpoint prefix)")],
                   trust: TrustOpt = False,
                   fmt: Annotated[str | None, typer.Option("--format", help="another source format")] = None) -> None:
    """Convert a manually downloaded published file of a zoo model (SimCLR, iNat, PyContrast ...)."""
    from medtransfer.models.hub import convert

    console.print(f"{name}: {convert(name, src, trust=trust, fmt=fmt)}")


def _user_checkpoint(model: str, arch: str | None, fmt: str | None, trust: bool) -> str:
    """--model FILE --arch A [--format F]: the file converted once into a model folder, usable as a model name."""
    from medtransfer.errors import ConfigError

    if arch is None:
        if fmt is not None:
            raise ConfigError(f"--format {fmt} needs --arch: which architecture is {model!r}? (e.g. --arch resnet50)")
        return model
    from medtransfer.models.hub import import_checkpoint

    return str(import_checkpoint(model, arch=arch, fmt=fmt or "torchvision", trust=trust))


@app.command()
def extract(model: Annotated[str, typer.Option(help="model name")],
            dataset: Annotated[str, typer.Option(help="dataset name, or a folder / CSV of your images")],
            split: Annotated[str, typer.Option(help="train, val, test or all")] = "all",
            data_root: DataRoot = None, batch_size: int = 128,
            bf16: Annotated[bool, typer.Option(help="bf16 autocast where it pays (CUDA, CPUs with AMX)")] = True,
            input_size: Annotated[int | None, typer.Option(help="override the model's input size")] = None,
            force: bool = False, arch: ArchOpt = None, fmt: FormatOpt = None, trust: TrustOpt = False) -> None:
    """Extract (and cache) features of a dataset under a model."""
    from medtransfer import data, features, models

    net = models.create(_user_checkpoint(model, arch, fmt, trust))
    splits = data.get_card(dataset).splits if split == "all" else (split,)
    for s in splits:
        fs = features.extract(net, data.load(dataset, s, data_root=data_root), batch_size=batch_size,
                              bf16=None if bf16 else False, input_size=input_size, force=force,
                              progress=_bars())
        speed = f"{fs.meta['images_per_s']} images/s" if "images_per_s" in fs.meta else ""
        console.print(f"{dataset}:{s} {fs.x.shape} key={fs.key} {speed}")


EXECUTORS = ("local", "ray")


@app.command()
def bench(args: Annotated[list[str] | None, typer.Argument(
              help="optional SPEC.yaml, then key=value overrides (e.g. seeds=[0,1])", show_default=False)] = None,
          store: Annotated[Path | None, typer.Option(help="results store (default runs/<name>.sqlite)")] = None,
          force: Annotated[bool, typer.Option(help="recompute cells the store already holds")] = False,
          executor: Annotated[str, typer.Option(help="local (this process) or ray (a Ray cluster)")] = "local",
          address: Annotated[str | None, typer.Option(help="Ray cluster: auto, host:port or ray://host:port "
                                                      "(default: start a local one)")] = None,
          num_cpus: Annotated[int | None, typer.Option(help="CPUs of a local Ray cluster (default: all)")] = None,
          dry_run: Annotated[bool, typer.Option(help="list the cells and their estimated cost; run nothing")] = False,
          as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False) -> None:
    """Run a benchmark grid (the embedded default when no SPEC is given) and print its results table."""
    from medtransfer.report import results_table
    from medtransfer.runner import ResultStore, expand, load_spec
    from medtransfer.runner.local import precision_for

    _check_run(executor, address, dry_run=dry_run)
    args = list(args or [])
    path = args.pop(0) if args and "=" not in args[0] else None
    spec = load_spec(path, args)
    target = store or Path("runs") / f"{spec.name}.sqlite"
    if dry_run:
        _dry_run(expand(spec, precision=precision_for(spec)), target, executor=executor, force=force,
                 as_json=as_json)
        return
    with ResultStore(target) as st:
        summary = _run_grid(spec, st, executor=executor, address=address, num_cpus=num_cpus, force=force,
                            progress=_bars(as_json))
        ids = {c.cell_id for c in expand(spec, precision=precision_for(spec))}  # this spec's cells, not older ones
        rows = [r for r in st.results() if r["cell_id"] in ids]
    if as_json:
        print(json.dumps(rows, indent=1, default=str))
        return
    console.print(results_table(rows, title=f"medtransfer bench: {spec.name}"))
    console.print(f"{summary.done} cells run, {summary.skipped} already in {st.path}, {len(summary.failed)} failed")
    for message in summary.failed:
        console.print(f"[red]failed[/red] {message}")
    if summary.failed:
        raise typer.Exit(1)


def _check_run(executor: str, address: str | None, *, dry_run: bool) -> None:
    """A known executor, --address only with Ray, a Ray address that answers and a $MEDTRANSFER_DEVICE that is
    there: before the spec is read or a store opened, so a bad setup changes nothing."""
    if executor not in EXECUTORS:
        from medtransfer.registry import did_you_mean

        raise ConfigError(f"Unknown executor {executor!r}.{did_you_mean(executor, list(EXECUTORS))} Choose one of "
                          f"{list(EXECUTORS)}.")
    if address is not None and executor != "ray":
        raise ConfigError("--address names a Ray cluster; add --executor ray.")
    if executor == "ray" and not dry_run:
        from medtransfer.runner.ray import check_address

        check_address(address)
    from medtransfer.config import DEVICE_ENV

    if os.environ.get(DEVICE_ENV) and not dry_run:  # a device that is not there: before any cell runs
        from medtransfer.features import default_device

        default_device()


def _run_grid(spec: GridSpec, store: ResultStore, *, executor: str, address: str | None, num_cpus: int | None,
              force: bool, progress: bool) -> RunSummary:
    if executor == "ray":
        from medtransfer.runner.ray import run_grid_ray

        return run_grid_ray(spec, store, address=address, force=force, num_cpus=num_cpus, progress=progress)
    from medtransfer.runner import run_grid

    return run_grid(spec, store, force=force, progress=progress)


def _dry_run(cells: list, store: Path, *, executor: str, force: bool, as_json: bool) -> None:
    from medtransfer.runner.estimate import estimate, store_history, totals

    found = estimate(cells, store_history(store))
    total = totals(found, force=force)
    if as_json:
        print(json.dumps({"executor": executor, "store": str(store), **total, "cells_detail": [
            {"cell_id": e.cell.cell_id, "model": e.cell.model, "dataset": e.cell.dataset, "protocol": e.cell.protocol,
             "seed": e.cell.seed, "fraction": e.cell.fraction, "status": e.status, "estimated_s": e.seconds,
             "basis": e.basis, "resource": e.resource} for e in found]}, indent=1))
        return
    table = Table("cell", "model", "dataset", "protocol", "seed", "labels", "in store", "est. s", "on", "basis",
                  title=f"dry run ({executor} executor): nothing runs")
    for e in found:
        c = e.cell
        table.add_row(c.cell_id[:12], c.model, c.dataset, c.protocol, str(c.seed),
                      "-" if c.fraction is None else f"{100 * c.fraction:g}%", e.status,
                      "?" if e.seconds is None else f"{e.seconds:.1f}", e.resource, e.basis)
    console.print(table)
    console.print(f"{total['to_run']} of {total['cells']} cells to run ({total['skipped']} done in {store}); "
                  f"estimated {total['estimated_s']:.1f} s of cell time, {total['unknown']} cells without an "
                  f"estimate; {total['gpu_cells']} would use a GPU where the cluster has one. Frozen cells' "
                  "figures leave out feature extraction (once per model and dataset).")


def _result_table(result: ClassificationResult, title: str) -> Table:
    from medtransfer.report.tables import CONSTANT_NOTE, constant_kappa

    constant = [name for name, v in result.metrics.items() if constant_kappa(name, v, *result.ci[name])]
    table = Table("metric", "value", "95% CI", title=title, caption=CONSTANT_NOTE if constant else None)
    for name, value in result.metrics.items():
        lo, hi = result.ci[name]
        table.add_row(name, f"{value:.4f}", f"[{lo:.4f}, {hi:.4f}]" + ("*" if name in constant else ""))
    return table


@app.command("eval")
def eval_(args: Annotated[list[str], typer.Argument(
              help="PROTOCOL (linear, knn, fewshot, finetune, segment), then key=value options (e.g. epochs=2)",
              show_default=False)],
          model: Annotated[str, typer.Option(help="model name")],
          dataset: Annotated[str, typer.Option(help="dataset name, or a folder / CSV of your images")],
          data_root: DataRoot = None,
          fraction: Annotated[float | None, typer.Option(help="share of training labels, e.g. 0.1")] = None,
          per_class: Annotated[int | None, typer.Option(help="training labels per class, e.g. 20")] = None,
          seed: int = 0, batch_size: int = 128,
          bf16: Annotated[bool, typer.Option(help="bf16 autocast where it pays (CUDA, CPUs with AMX)")] = True,
          input_size: Annotated[int | None, typer.Option(help="override the model's input size")] = None,
          preset: Annotated[str | None, typer.Option(help="protocol preset, e.g. medmnist, anton2022")] = None,
          init: Annotated[str | None, typer.Option(help="finetune: 'scratch' trains from random init")] = None,
          arch: ArchOpt = None, fmt: FormatOpt = None, trust: TrustOpt = False,
          as_json: Annotated[bool, typer.Option("--json", help="print the result as one JSON object")] = False) -> None:
    """Evaluate one model on one dataset with one protocol and print the result.

    Frozen protocols read cached features; finetune trains on the images and, run again after a kill, resumes.
    """
    from medtransfer.config import parse_overrides
    from medtransfer.runner._kinds import check_protocol_fits
    from medtransfer.runner.trained import TRAINED_PROTOCOLS, run_cli_trained

    protocol, *overrides = args
    check_protocol_fits(protocol, dataset)  # before any model is built or image read
    model = _user_checkpoint(model, arch, fmt, trust)
    options = parse_overrides(overrides) | ({"preset": preset} if preset else {}) | ({"init": init} if init else {})
    figures = None
    if protocol == "segment":  # overlays of predicted vs true masks of the first test images, one file per setting
        from medtransfer.config import config_hash

        key = config_hash({"options": options, "fraction": fraction, "per_class": per_class}, length=8)
        figures = Path("runs") / "figures" / f"segment-{Path(model).name}-{Path(dataset).name}-seed{seed}-{key}.png"
    if protocol in TRAINED_PROTOCOLS:  # trains on images: no features
        result = run_cli_trained(protocol, model, dataset, seed=seed, fraction=fraction, per_class=per_class,
                                 options=options, data_root=data_root, progress=_bars(as_json), figures=figures)
    else:
        if init is not None:
            raise ConfigError(f"--init applies to trained protocols ({', '.join(TRAINED_PROTOCOLS)}); "
                              f"{protocol!r} reads frozen features. Drop --init.")
        result = _eval_frozen(protocol, model, dataset, options, seed=seed, fraction=fraction, per_class=per_class,
                              batch_size=batch_size, bf16=bf16, input_size=input_size, data_root=data_root,
                              progress=_bars(as_json))
    if as_json:
        extra = {"figures": str(figures)} if figures is not None else {}
        print(json.dumps({"model": model, "dataset": dataset} | result.to_dict() | extra, default=float))
        return
    console.print(_result_table(result, f"{protocol}: {model} on {dataset} (n_train={result.n_train})"))
    console.print(f"chosen: {result.chosen}")
    if figures is not None:
        console.print(f"overlays (image | true | predicted masks): {figures}")


def _eval_frozen(protocol: str, model: str, dataset: str, options: dict, *, seed: int, fraction: float | None,
                 per_class: int | None, batch_size: int, bf16: bool, input_size: int | None,
                 data_root: Path | None, progress: bool) -> ClassificationResult:
    from medtransfer.runner import GridSpec
    from medtransfer.runner.local import pair_features, precision_for, run_protocol

    spec = GridSpec(models=(model,), datasets=(dataset,), protocols=(protocol,), seeds=(seed,), batch_size=batch_size,
                    bf16=None if bf16 else False, input_size=input_size,
                    data_root=str(data_root) if data_root else None)
    feats, card = pair_features(spec, model, dataset, progress=progress, precision=precision_for(spec))
    return run_protocol(protocol, feats, card, seed=seed, fraction=fraction, per_class=per_class, options=options)


@app.command("analyze")
def analyze(args: Annotated[list[str], typer.Argument(
                help="ANALYSIS (saliency, invariance, inversion, embedding), then key=value options "
                     "(e.g. n_images=4 stride=2, transforms=[rotation,h_flip], method=tsne)", show_default=False)],
            model: Annotated[str, typer.Option(help="model name, or a model folder / checkpoint")],
            dataset: Annotated[str, typer.Option(help="dataset name, or a folder / CSV of your images")],
            data_root: DataRoot = None, seed: int = 0, batch_size: int = 128,
            preset: Annotated[str | None, typer.Option(help="saliency preset: default or anton2022")] = None,
            out: Annotated[Path, typer.Option(help="folder for the pictures and the JSON")] = Path("runs/analysis"),
            arch: ArchOpt = None, fmt: FormatOpt = None, trust: TrustOpt = False,
            as_json: Annotated[bool, typer.Option("--json", help="print the result as one JSON object")] = False
            ) -> None:
    """Why a model transfers: occlusion saliency, invariance to transforms, feature inversion, embeddings.

    Numbers are printed (and written as JSON); pictures go to --out.
    """
    from medtransfer.config import config_hash, parse_overrides
    from medtransfer.models import create
    from medtransfer.runner.analyses import resolve_options, run_analysis

    name, *overrides = args
    options = parse_overrides(overrides) | ({"preset": preset} if preset else {})
    resolve_options(name, options)  # a bad analysis or option fails before any model is built
    source = _user_checkpoint(model, arch, fmt, trust)
    # two models, datasets or data roots of one base name never share files
    where = {k: str(Path(v).resolve()) if Path(v).exists() else str(v)
             for k, v in (("model", source), ("dataset", dataset), ("data_root", data_root)) if v is not None}
    key = config_hash({"options": options, "seed": seed, **where}, length=8)
    prefix = out / f"{name}-{Path(source).name}-{Path(dataset).name}-seed{seed}-{key}"
    outcome = run_analysis(name, create(source), dataset, seed=seed, options=options, data_root=data_root,
                           figures=prefix, progress=_bars(as_json), batch_size=batch_size)
    record = {"analysis": name, "model": source, "dataset": dataset, "seed": seed, "options": options,
              "results": [dataclasses.asdict(r) for r in outcome.rows], "extra": outcome.extra,
              "files": outcome.files}
    prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path = prefix.with_name(prefix.name + ".json")
    json_path.write_text(json.dumps(record, indent=1, default=float))
    if as_json:
        print(json.dumps(record | {"json": str(json_path)}, default=float))
        return
    table = Table("metric", "split", "value", "95% CI", "n", title=f"{name}: {source} on {dataset}")
    for r in outcome.rows:
        ci = f"[{r.ci_low:.4f}, {r.ci_high:.4f}]" if r.ci_low is not None and r.ci_high is not None else "-"
        table.add_row(r.metric, r.split, f"{r.value:.4f}", ci, str(r.n))
    console.print(table)
    for f in [*outcome.files, str(json_path)]:
        console.print(f"wrote {f}")


EXPORT_FORMATS = ("csv", "parquet", "json")


def _filters(model: str | None, dataset: str | None, protocol: str | None, metric: str | None) -> dict[str, str]:
    return {k: v for k, v in (("model", model), ("dataset", dataset), ("protocol", protocol), ("metric", metric))
            if v is not None}


@results_app.command("export")
def results_export(store: Annotated[Path, typer.Argument(help="results store, e.g. runs/default.sqlite")],
                   fmt: Annotated[str, typer.Option("--format", help="csv, parquet or json")] = "csv",
                   out: Annotated[Path | None, typer.Option("-o", "--out", help="output file (default: the store's "
                                                            "name with the format's suffix)")] = None,
                   model: str | None = None, dataset: str | None = None, protocol: str | None = None,
                   metric: str | None = None) -> None:
    """Write a store's results (one row per cell, metric and split, with CIs and provenance) to a file."""
    from medtransfer.runner.store import ResultStore

    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"Unknown export format {fmt!r}; choose one of {list(EXPORT_FORMATS)}.")
    target = out or store.with_suffix(f".{fmt}")
    if target.resolve() == store.resolve():
        raise ConfigError(f"The export would overwrite the store {str(store)!r}; pass another -o FILE.")
    filters = _filters(model, dataset, protocol, metric)
    st = ResultStore.open_read_only(store)
    try:
        n = len(st.results(**filters))
        if not n:
            matching = f" matching {filters}" if filters else ""
            raise ConfigError(f"The store {str(store)!r} holds no results{matching}; nothing was written. Run "
                              "`medtransfer bench` into it first.")
        path = {"csv": st.to_csv, "parquet": st.to_parquet, "json": st.to_json}[fmt](target, **filters)
    finally:
        st.close()
    console.print(f"wrote {n} rows to {path}")


@results_app.command("show")
def results_show(store: Annotated[Path, typer.Argument(help="results store, e.g. runs/default.sqlite")],
                 model: str | None = None, dataset: str | None = None, protocol: str | None = None,
                 metric: str | None = None) -> None:
    """Print a store's results table (models as columns), read-only."""
    from medtransfer.report import results_table
    from medtransfer.runner.store import ResultStore

    st = ResultStore.open_read_only(store)
    try:
        rows = st.results(**_filters(model, dataset, protocol, metric))
    finally:
        st.close()
    if not rows:
        raise ConfigError(f"The store {str(store)!r} holds no results (matching the filters); run `medtransfer "
                          "bench` into it first.")
    console.print(results_table(rows, title=f"medtransfer results: {store}"))


@app.command("report")
def report(store: Annotated[Path, typer.Argument(help="results store, e.g. runs/default.sqlite")],
           out: Annotated[Path | None, typer.Option("-o", "--out", help="the page to write (default: the store's "
                                                    "name with .html)")] = None,
           n_boot: Annotated[int, typer.Option(help="resamples of the paired bootstrap")] = 2000,
           seed: Annotated[int, typer.Option(help="seed of the bootstrap's resampling")] = 0,
           as_json: Annotated[bool, typer.Option("--json", help="print what the page holds as JSON")] = False) -> None:
    """Write one self-contained HTML page (rankings, charts, paired comparisons, provenance) from a store."""
    from medtransfer.report.html import build_report

    info = build_report(store, out or store.with_suffix(".html"), n_boot=n_boot, seed=seed)
    if as_json:
        print(json.dumps(dataclasses.asdict(info), default=str))
        return
    charts = ", ".join(f"{n} {kind}" for kind, n in info.charts.items()) or "no charts"
    console.print(f"wrote {info.path}: {info.cells} cells, {charts}, {info.comparisons} paired comparisons, "
                  f"{info.images} pictures")


@app.command("reproduce")
def reproduce(study: Annotated[str, typer.Argument(help="anton2022, hosseinzadeh2021, taleb2020, freddy2023, "
                                                   "medmnist-v2, ssl-medmnist or ssl-medmnist-cpu",
                                                   show_default=False)],
              overrides: Annotated[list[str] | None, typer.Argument(
                  help="key=value spec overrides for every part, e.g. seeds=[0]", show_default=False)] = None,
              data_root: DataRoot = None,
              store: Annotated[Path | None, typer.Option(help="results store (default runs/<study>.sqlite)")] = None,
              dry_run: Annotated[bool, typer.Option(help="list the cells, their cost and the data; run nothing")
                                 ] = False,
              measure: Annotated[bool, typer.Option(help="with --dry-run: time each architecture here (and on "
                                                    "CUDA if present) for a compute estimate")] = False,
              executor: Annotated[str, typer.Option(help="local or ray")] = "local",
              address: Annotated[str | None, typer.Option(help="Ray cluster address (with --executor ray)")] = None,
              as_json: Annotated[bool, typer.Option("--json", help="print the plan (--dry-run) as JSON")] = False
              ) -> None:
    """Run a reference study's grid (shipped with the study's presets) into one store; the report then puts our
    numbers beside the published ones."""
    from medtransfer.config import parse_overrides
    from medtransfer.runner.local import precision_for
    from medtransfer.runner.studies import load_study, missing_data, published_rows, study_cells

    _check_run(executor, address, dry_run=dry_run)
    settings = parse_overrides(overrides or []) | ({"data_root": str(data_root)} if data_root else {})
    plan = load_study(study, settings)
    cells = study_cells(plan, precision=precision_for(plan.parts[0][1]))
    target = store or Path("runs") / f"{study}.sqlite"
    missing, downloadable = missing_data(plan, str(data_root) if data_root else None)
    if dry_run:
        costs = None
        if measure:
            from medtransfer.runner.costs import study_costs

            costs = study_costs((label, spec, [c for part, c in cells if part == label]) for label, spec in plan.parts)
        _study_plan(plan, cells, missing, downloadable, target, costs=costs, as_json=as_json)
        return
    if missing:
        raise ConfigError(f"{study}: {len(missing)} of its {len(plan.datasets())} datasets are not in place; nothing "
                          "was run. Fix each:\n" + "\n".join(f"  - {m}" for m in missing))
    from medtransfer.runner import ResultStore

    failed = 0
    with ResultStore(target) as st:
        st.set_meta("study", {"name": plan.name, "title": plan.title, "citation": plan.citation,
                              "source": plan.source, "omitted": list(plan.omitted)})
        st.set_meta("published", published_rows(plan))
        for label, spec in plan.parts:
            console.print(f"{study}: part {label!r}")
            summary = _run_grid(spec, st, executor=executor, address=address, num_cpus=None, force=False,
                                progress=_bars())
            failed += len(summary.failed)
    console.print(f"{study}: {len(cells)} cells in {target}, {failed} failed. The report, with the published "
                  f"numbers beside ours: medtransfer report {target}")
    if failed:
        raise typer.Exit(1)


def _hours(value: float | None) -> str:
    return "?" if value is None else f"{value:,.2f}"


def _study_plan(plan: Study, cells: list, missing: list[str], downloadable: list[str], store: Path, *,
                costs: dict | None, as_json: bool) -> None:
    from collections import Counter

    from medtransfer.runner.estimate import estimate, store_history, totals

    history = store_history(store)
    found = estimate([c for _, c in cells], history)
    total = totals(found)
    by_part = Counter((label, c.protocol) for label, c in cells)
    out = {"study": plan.name, "title": plan.title, "store": str(store), **total,
           "parts": [{"part": p, "protocol": q, "cells": n} for (p, q), n in by_part.items()],
           "published_numbers": len(plan.published), "omitted": list(plan.omitted),
           "missing_data": missing, "to_download": downloadable, "measured_costs": costs}
    if as_json:
        print(json.dumps(out, indent=1))
        return
    console.print(f"[bold]{plan.title}[/bold]\n{plan.source}")
    table = Table("part", "protocol", "cells", title=f"dry run: {len(cells)} cells, nothing runs")
    for row in out["parts"]:
        table.add_row(row["part"], row["protocol"], str(row["cells"]))
    console.print(table)
    known = (f"estimated {total['estimated_s']:.0f} s from {store}'s finished cells, {total['unknown']} cells "
             "without an estimate" if history else "no finished cell in the store yet: no cost estimate (run a "
             "first part, or `bench --dry-run` after a few cells)")
    console.print(f"{total['to_run']} to run, {total['skipped']} done; {known}; {total['gpu_cells']} cells train "
                  "or analyse on images (one GPU each under --executor ray).")
    if costs is not None:
        cost = Table("part", "cells", "this CPU, h", "CUDA, h", title="estimated compute (measured throughput x "
                     "images; see medtransfer.runner.costs)")
        for row in costs["parts"]:
            cost.add_row(row["part"], str(row["cells"]), _hours(row["cpu_h"]), _hours(row["cuda_h"]))
        console.print(cost)
        if "cuda" not in costs["devices"]:
            console.print("no CUDA device here: the GPU column is not measured")
    for item in plan.omitted:
        console.print(f"omitted: {item}")
    console.print(f"{len(plan.published)} published numbers go beside ours in the report.")
    if missing:
        console.print(f"[red]{len(missing)} datasets not in place[/red] (reproduce would stop before running):")
        for m in missing:
            console.print(f"  - {m}", highlight=False)
    if downloadable:
        console.print(f"{len(downloadable)} datasets are absent and will be downloaded when the run starts:")
        for m in downloadable:
            console.print(f"  - {m}", highlight=False)


@app.command("pretrain")
def pretrain_(method: Annotated[str, typer.Argument(
                  help="simclr, byol, mocov2, barlowtwins, rotation, rpl, jigsaw, cpc, exemplar", show_default=False)],
              overrides: Annotated[list[str] | None, typer.Argument(
                  help="key=value settings, e.g. epochs=50 augmentation=novel options.jitter=2", show_default=False)
              ] = None,
              dataset: Annotated[str, typer.Option(help="dataset name, or a folder / CSV of your images")] = "",
              data_root: DataRoot = None,
              dims: Annotated[int | None, typer.Option(help="2 or 3 (default: the dataset's)")] = None,
              out: Annotated[Path | None, typer.Option(help="model folder (default runs/<method>-<dataset>)")] = None
              ) -> None:
    """Self-supervised pretraining; writes a model folder usable as --model DIR (a second call resumes)."""
    from medtransfer.config import from_dict, parse_overrides
    from medtransfer.errors import ConfigError
    from medtransfer.pretrain import PretrainConfig, pretrain

    if not dataset:
        raise ConfigError("medtransfer pretrain needs --dataset (e.g. --dataset breastmnist).")
    settings = parse_overrides(overrides or []) | {"method": method, "dataset": dataset}
    settings |= {k: v for k, v in (("dims", dims), ("data_root", str(data_root) if data_root else None)) if v}
    cfg = from_dict(PretrainConfig, settings, where="medtransfer pretrain")
    folder = out or Path("runs") / f"{method}-{Path(dataset).name}"
    res = pretrain(cfg, folder, progress=_bars())
    rec = res.record
    console.print(f"{method} on {dataset}: {rec['epochs']} epochs, {rec['steps']} steps, final loss "
                  f"{rec['final_loss']:.4f}, {rec['images_per_s']} images/s -> {res.folder}")
    from medtransfer.data import get_card

    root = f" --data-root {data_root}" if data_root else ""
    protocol = "segment" if get_card(dataset).task == "segmentation" else "linear"
    console.print(f"use it: medtransfer eval {protocol} --model {res.folder} --dataset {dataset}{root}")


def main() -> None:
    """Entry point: user errors print one clear message (exit 2) instead of a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except MedtransferError as e:
        # soft_wrap: a log or pipe gets the message's own line breaks, not rich's 80-column ones
        from rich.markup import escape

        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
