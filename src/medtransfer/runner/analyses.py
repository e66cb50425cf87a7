"""Analysis cells (saliency, invariance, inversion, embedding): numbers for the store, pictures beside it.

One function runs one analysis of one model on one dataset from its options, for the grid (`analyses:` in a spec)
and for ``medtransfer analyze``. The analyses themselves live in `medtransfer.analysis` and stay pure; here they meet
the data loaders, the feature cache and the figure writers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from medtransfer import data as mdata
from medtransfer.analysis import ANALYSES, sample_index
from medtransfer.errors import ConfigError
from medtransfer.models.factory import card_of
from medtransfer.registry import did_you_mean
from medtransfer.runner.store import ResultRow

# Each analysis's options and their defaults: a CPU-sized version of the reference settings (PROTOCOLS.md §1.8-1.10).
DEFAULTS: dict[str, dict[str, Any]] = {
    "saliency": {"preset": "default", "n_images": 8, "window": None, "stride": 1, "baseline": 0.0, "split": "test",
                 "batch_size": 256},
    "invariance": {"transforms": ["rotation", "translation", "scale", "h_flip", "v_flip", "invert", "brightness",
                                  "contrast", "blur", "deform"],
                   "k": 8, "n_images": 100, "split": "test", "cov_split": "train", "view_pairs": False},
    "inversion": {"n_images": 1, "iters": 1000, "lr": 1e-3, "size": 256, "crop": 224,
                  "lpips": ["alex", "vgg", "squeeze"], "split": "test"},
    "embedding": {"method": "pca", "split": "test", "max_points": 2000},
}


@dataclass
class AnalysisOutcome:
    """What one analysis produced: rows for the store, extra JSON, files written."""

    rows: list[ResultRow]
    extra: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def resolve_options(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults < `options`; an unknown analysis or option is a ConfigError naming the choices."""
    if name not in DEFAULTS:
        raise ConfigError(f"Unknown analysis {name!r}; choose one of {list(ANALYSES)}."
                          f"{did_you_mean(name, list(ANALYSES))}")
    unknown = sorted(set(options or {}) - set(DEFAULTS[name]))
    if unknown:
        raise ConfigError(f"Unknown option(s) {unknown} of analysis {name!r}; it takes {sorted(DEFAULTS[name])}.")
    opts = {**DEFAULTS[name], **(options or {})}
    for key in ("transforms", "lpips"):  # a name or a list of names
        if isinstance(opts.get(key), str):
            opts[key] = [opts[key]]
    _check_types(name, opts)
    if name == "invariance":
        from medtransfer.analysis.invariance import get_transform

        for t in opts["transforms"]:
            get_transform(t)
    if name == "inversion":
        from medtransfer.analysis.inversion import LPIPS_NETS

        bad = [n for n in opts["lpips"] if n not in LPIPS_NETS]
        if bad:
            raise ConfigError(f"Unknown LPIPS network(s) {bad}; choose from {list(LPIPS_NETS)} (or lpips=[] for none).")
    if name == "embedding" and opts["method"] not in ("pca", "tsne", "umap"):
        raise ConfigError(f"Unknown embedding method {opts['method']!r}; choose pca, tsne or umap.")
    for key in ("n_images", "k", "iters", "max_points", "stride", "batch_size"):
        v = opts.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"The {key!r} option of analysis {name!r} must be a positive int. Got {v!r} instead.")
    return opts


def _check_types(name: str, opts: dict[str, Any]) -> None:
    """Presets, the window, the baseline, transform lists and flags: named errors instead of a failing cell."""
    from medtransfer.analysis.saliency import PRESETS

    def fail(key: str, expected: str) -> ConfigError:
        return ConfigError(f"The {key!r} option of analysis {name!r} must be {expected}. Got {opts[key]!r} instead.")

    if name == "saliency":
        if opts["preset"] not in PRESETS:
            raise ConfigError(f"Unknown saliency preset {opts['preset']!r}; choose one of {list(PRESETS)}.")
        w = opts["window"]
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise fail("window", "a positive int or null (a tenth of the image side)")
        if isinstance(opts["baseline"], bool) or not isinstance(opts["baseline"], (int, float)):
            raise fail("baseline", "a number (the occluder's value after normalisation)")
    if name == "invariance":
        if not isinstance(opts["view_pairs"], bool):
            raise fail("view_pairs", "true or false")
    for key in ("transforms", "lpips"):
        if key in opts and not (isinstance(opts[key], list) and all(isinstance(t, str) for t in opts[key])):
            raise fail(key, "a list of names")
    if "split" in opts and not isinstance(opts["split"], str):
        raise fail("split", "a split name (train, val, test)")


def _mean_ci(values: np.ndarray, seed: int, n_boot: int = 1000) -> tuple[float, float | None, float | None, int]:
    """Mean of the finite values, with a bootstrap 95% interval over them (None for fewer than 2)."""
    from medtransfer.protocols.metrics import bootstrap_indices

    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), None, None, 0
    if len(v) < 2:
        return float(v.mean()), None, None, 1
    means = v[bootstrap_indices(len(v), n_boot=n_boot, seed=seed)].mean(axis=1)
    return float(v.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)), len(v)


def _row(metric: str, split: str, values: np.ndarray, seed: int) -> ResultRow:
    mean, lo, hi, n = _mean_ci(values, seed)
    return ResultRow(metric, split, mean, lo, hi, n)


def _load(dataset: str, split: str, data_root: str | Path | None, dataset_options: dict[str, Any]) -> Any:
    card = mdata.get_card(dataset)
    if split not in card.splits:
        raise ConfigError(f"Dataset {dataset!r} has no {split!r} split (it has {list(card.splits)}); set split=...")
    return mdata.load(dataset, split, data_root=data_root, **dataset_options)


def run_analysis(name: str, model: nn.Module, dataset: str, *, seed: int = 0, options: dict[str, Any] | None = None,
                 data_root: str | Path | None = None, dataset_options: dict[str, Any] | None = None,
                 figures: Path | None = None, progress: bool = False, batch_size: int = 128,
                 input_size: int | None = None) -> AnalysisOutcome:
    """Run analysis `name` of `model` on `dataset`; its pictures go to files named ``<figures>-*.png`` (None: none).

    `seed` draws the images analysed (and the covariance sample, t-SNE's start); `input_size` overrides the model
    card's, as a grid's `input_size` does for every cell (inversion keeps the reference's 224-px crop)."""
    opts = resolve_options(name, options)
    run = {"saliency": _saliency, "invariance": _invariance, "inversion": _inversion, "embedding": _embedding}[name]
    return run(model, dataset, opts, seed=seed, data_root=data_root, dataset_options=dataset_options or {},
               figures=figures, progress=progress, batch_size=batch_size, input_size=input_size)


@contextmanager
def _progress(label: str, total: int, unit: str, progress: bool) -> Iterator[Callable[[int], None]]:
    """A callback counting work for a bar (when `progress`) and for the progress lines, as `features` does."""
    from rich.progress import Progress

    from medtransfer._progress import Ticker

    ticker = Ticker(label, total, unit=unit)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(label, total=total)

        def tick(n: int) -> None:
            bar.advance(task, n)
            ticker.advance(n)

        yield tick
    ticker.finish()


def _saliency(model: nn.Module, dataset: str, opts: dict[str, Any], *, seed: int, data_root: Any,
              dataset_options: dict[str, Any], figures: Path | None, progress: bool, batch_size: int,
              input_size: int | None) -> AnalysisOutcome:
    from medtransfer.analysis import saliency as sal

    ds = _load(dataset, opts["split"], data_root, dataset_options)
    index = _with_region(ds, opts["n_images"], seed)
    side = ds.card.image_size or int(np.asarray(ds.images(index[:1]))[0].shape[0])  # decode only when unknown
    n_pos = _positions_count(opts, input_size or card_of(model).input.input_size or side, int(card_of(model).dims))
    with _progress(f"saliency {card_of(model).name} / {dataset}", n_pos * len(index), "occlusions", progress) as tick:
        r = sal.saliency(model, ds, index, preset=opts["preset"], window=opts["window"], stride=opts["stride"],
                         baseline=opts["baseline"], batch_size=opts["batch_size"], input_size=input_size, tick=tick)
    split = opts["split"]
    rows = [_row("attentive_diffusion", split, r.diffusion, seed)]
    extra: dict[str, Any] = {"settings": r.settings, "index": index.tolist(),
                             "attentive_diffusion": r.diffusion.tolist()}
    if r.pointing is not None:
        rows.append(_row("pointing", split, r.pointing, seed))
        extra["pointing"] = r.pointing.tolist()
    files = []
    if figures is not None:
        files.append(str(_figure_path(figures, "saliency")))
        from medtransfer.runner.figures import saliency_overlays

        saliency_overlays(files[-1], list(r.images[:4]), list(r.maps[:4]))
    return AnalysisOutcome(rows, extra, files)


def _with_region(ds: Any, n: int, seed: int) -> np.ndarray:
    """`n` seeded rows, preferring rows whose masks hold a region of interest (a lesion) so the pointing score has
    something to point at: the seeded order is scanned in chunks until `n` such rows are found (all rows when the
    dataset has no masks, or too few regions)."""
    from medtransfer.analysis.saliency import region_of_interest

    order = np.random.default_rng(seed).permutation(len(ds))
    if region_of_interest(ds, order[:1]) is None:
        return np.sort(order[:n])
    found: list[int] = []
    for lo in range(0, len(order), 256):
        chunk = order[lo:lo + 256]
        roi = region_of_interest(ds, np.sort(chunk))
        assert roi is not None
        has = set(np.sort(chunk)[roi.reshape(len(chunk), -1).any(axis=1)].tolist())
        found += [int(i) for i in chunk if int(i) in has][:n - len(found)]
        if len(found) == n:
            break
    return np.sort(np.array(found if len(found) == n else order[:n], dtype=np.int64))


def _positions_count(opts: dict[str, Any], side: int, dims: int) -> int:
    """Occluded copies per image (for the progress bar): an estimate from the stored size when resizing."""
    from medtransfer.analysis.saliency import PRESETS, default_window, positions

    size = PRESETS[opts["preset"]]["input_size"] or side
    window = min(size, default_window(opts["preset"], size, opts["window"]))
    return len(positions(size, window, opts["stride"])) ** dims


def _figure_path(prefix: Path, what: str) -> Path:
    return prefix.parent / f"{prefix.name}-{what}.png"


def _features(model: nn.Module, dataset: str, split: str, *, data_root: Any, dataset_options: dict[str, Any],
              batch_size: int, progress: bool, input_size: int | None) -> Any:
    from medtransfer.features import extract

    ds = _load(dataset, split, data_root, dataset_options)
    return ds, extract(model, ds, batch_size=batch_size, bf16=False, input_size=input_size, progress=progress)


def _invariance(model: nn.Module, dataset: str, opts: dict[str, Any], *, seed: int, data_root: Any,
                dataset_options: dict[str, Any], figures: Path | None, progress: bool, batch_size: int,
                input_size: int | None) -> AnalysisOutcome:
    from medtransfer.analysis import invariance as inv

    if opts["view_pairs"] and not mdata.get_card(dataset).extra.get("view_pairs"):
        raise ConfigError(f"Dataset {dataset!r} declares no view pairs, so view_pairs=true has nothing to compare; "
                          "use a dataset whose card has them (the phantoms: a second noise draw of each scene).")
    _, cov_feats = _features(model, dataset, opts["cov_split"], data_root=data_root, dataset_options=dataset_options,
                             batch_size=batch_size, progress=progress, input_size=input_size)
    stats = inv.Whitening.fit(np.asarray(cov_feats.x), seed=seed)  # the features come from the cache when present
    ds = _load(dataset, opts["split"], data_root, dataset_options)
    n = min(opts["n_images"], len(ds))
    total = sum(len(inv.settings_of(t, _k(t, opts))) for t in opts["transforms"]) * n
    with _progress(f"invariance {card_of(model).name} / {dataset}", total, "images", progress) as tick:
        results = inv.invariances(model, ds, opts["transforms"], stats, k={t: _k(t, opts) for t in opts["transforms"]},
                                  n_images=n, seed=seed, batch_size=min(batch_size, 64), tick=tick,
                                  input_size=input_size)
    if opts["view_pairs"]:
        second = _load(dataset, opts["split"], data_root, {**dataset_options, "view": 1})
        results["multi-view"] = inv.multiview_invariance(model, ds, second, stats, n_images=n, seed=seed,
                                                         batch_size=min(batch_size, 64), input_size=input_size)
    rows = []
    for t, r in results.items():
        rows.append(ResultRow(f"invariance:{t}", opts["split"], r.mean_cosine, None, None, r.n_images))
        rows.append(ResultRow(f"mahalanobis:{t}", opts["split"], r.mean_mahalanobis, None, None, r.n_images))
    extra = {"covariance_images": stats.n, "k": {t: len(r.settings) for t, r in results.items()},
             "per_setting": {t: {"cosine": r.cosine.tolist(), "mahalanobis": r.mahalanobis.tolist()}
                             for t, r in results.items()}}
    files = []
    if figures is not None:
        from medtransfer.runner.figures import invariance_bars

        files.append(str(invariance_bars(_figure_path(figures, "invariance"), list(results),
                                         [r.mean_cosine for r in results.values()],
                                         title=f"{card_of(model).name} on {dataset}")))
    return AnalysisOutcome(rows, extra, files)


def _k(transform: str, opts: dict[str, Any]) -> int | None:
    """The option k for continuous transforms; the two-state ones keep their 2 settings, posterize its 7."""
    from medtransfer.analysis.invariance import get_transform

    return None if get_transform(transform).default_k <= 8 else opts["k"]


def _inversion(model: nn.Module, dataset: str, opts: dict[str, Any], *, seed: int, data_root: Any,
               dataset_options: dict[str, Any], figures: Path | None, progress: bool, batch_size: int,
               input_size: int | None) -> AnalysisOutcome:
    import torch

    from medtransfer.analysis import inversion as inv
    from medtransfer.data.transforms import to_tensor

    if card_of(model).dims != 2:
        raise ConfigError("Feature inversion reconstructs 2D images; this model is 3D. Use saliency, invariance or "
                          "embedding for volumes.")
    modules = {net: inv.load_lpips(net) for net in opts["lpips"]}  # missing weights fail before any optimisation
    ds = _load(dataset, opts["split"], data_root, dataset_options)
    index = sample_index(len(ds), opts["n_images"], seed)
    results = []
    with _progress(f"inversion {card_of(model).name} / {dataset}", opts["iters"] * len(index), "steps",
                   progress) as tick:
        for i in index:
            image = to_tensor(np.asarray(ds.images(np.array([i]))))[0]
            results.append(inv.invert(model, image, iters=opts["iters"], lr=opts["lr"], size=opts["size"],
                                      crop=opts["crop"], seed=seed, tick=tick))
    targets = torch.from_numpy(np.stack([r.target for r in results]))
    recons = torch.from_numpy(np.stack([r.reconstruction for r in results]))
    rows = [_row("feature_mse", opts["split"], np.array([r.final_loss for r in results]), seed)]
    extra = {"index": index.tolist(), "final_loss": [r.final_loss for r in results]}
    scores = {net: inv.perceptual_distance(targets, recons, m) for net, m in modules.items()}
    for net, s in scores.items():
        rows.append(_row(f"lpips_{net}", opts["split"], s, seed))
    if scores:
        rows.append(_row("lpips_average", opts["split"], np.mean(list(scores.values()), axis=0), seed))
    files = []
    if figures is not None:
        from medtransfer.runner.figures import inversion_panels

        files.append(str(inversion_panels(_figure_path(figures, "inversion"), [r.target for r in results],
                                          [r.reconstruction for r in results])))
    return AnalysisOutcome(rows, extra, files)


def _embedding(model: nn.Module, dataset: str, opts: dict[str, Any], *, seed: int, data_root: Any,
               dataset_options: dict[str, Any], figures: Path | None, progress: bool, batch_size: int,
               input_size: int | None) -> AnalysisOutcome:
    from sklearn.metrics import silhouette_score

    from medtransfer.analysis.embedding import embed

    ds, feats = _features(model, dataset, opts["split"], data_root=data_root, dataset_options=dataset_options,
                          batch_size=batch_size, progress=progress, input_size=input_size)
    keep = sample_index(len(feats.x), opts["max_points"], seed)
    labels = np.asarray(feats.y)[keep]
    multi_label = labels.ndim > 1
    if multi_label:  # coloured by the first positive label; -1 (drawn as "-1") for rows with none
        labels = np.where(labels.any(axis=1), labels.argmax(axis=1), -1)
    e = embed(np.asarray(feats.x)[keep], labels, method=opts["method"], seed=seed)
    rows = []
    if not multi_label and 2 <= len(np.unique(labels)) < len(labels):  # no silhouette for multi-label classes
        rows.append(ResultRow(f"silhouette_{opts['method']}", opts["split"],
                              float(silhouette_score(e.coords, labels)), None, None, len(labels)))
    extra = {"settings": e.settings, "n_points": len(keep)}  # the rows are in the CSV beside the plot
    files = []
    if figures is not None:
        from medtransfer.runner.figures import embedding_scatter

        png = _figure_path(figures, f"embedding-{opts['method']}")
        files.append(str(embedding_scatter(png, e.coords, labels, ds.card.label_names,
                                           title=f"{opts['method'].upper()} of {card_of(model).name} on {dataset}")))
        csv = png.with_suffix(".csv")
        np.savetxt(csv, np.column_stack([keep, labels, e.coords]), delimiter=",", header="row,label,x,y",
                   comments="", fmt=["%d", "%d", "%.6g", "%.6g"])
        files.append(str(csv))
    return AnalysisOutcome(rows, extra, files)
