"""A benchmark spec (YAML) and its expansion into cells: models x datasets x protocols x seeds, and the analyses'
cells: models x datasets x analyses x seeds."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from medtransfer import __version__
from medtransfer.config import config_hash, from_dict_partial, resolve
from medtransfer.data.sources import is_user_path
from medtransfer.errors import ConfigError, MedtransferError
from medtransfer.features import FEATURES_VERSION
from medtransfer.runner._kinds import is_segmentation, wrong_kind
from medtransfer.runner.pretraining import check_steps, recipe, step_config, step_of
from medtransfer.runner.store import Cell


@dataclass(frozen=True)
class GridSpec:
    """What a benchmark runs. Defaults < spec file < `key=value` overrides.

    Attributes:
        name: names the store file (``runs/<name>.sqlite``) unless a store path is given.
        models, datasets, protocols: registry names (or a folder/CSV path for a user dataset).
        seeds: one cell per seed (the seed also draws the label-budget subset and the protocol's randomness).
        fractions: label budgets: the stratified share of training labels each cell sees (1.0 = all).
        protocol_options: per-protocol settings, e.g. ``{linear: {C_grid: [0.1, 1.0]}}``.
        dataset_options: per-dataset loader options, e.g. ``{phantom-binary: {n: 500}}``.
        input_size: override every model card's input size (None keeps each card's own).
        bf16: bf16 autocast for extraction; None uses it where it pays (CUDA, CPUs with AMX).
        batch_size: extraction batch size.
        data_root: where dataset files are (default $MEDTRANSFER_DATA or ~/.medmnist).
        pretrain: pretraining steps run before the grid, e.g. ``[{name: simclr-phantom, method: simclr,
            dataset: phantom-binary-32, epochs: 2}]``; a step's name can then be listed under `models`
            (runner/pretraining.py).
        analyses: why-analyses run on every (model, dataset) pair and seed: ``[saliency, invariance, inversion,
            embedding]``; their numbers go to the store like any cell's, their pictures beside it.
        analysis_options: per-analysis settings, e.g. ``{saliency: {n_images: 4, stride: 2}}``.
    """

    name: str = "default"
    models: tuple[str, ...] = ("resnet18-small", "resnet18")
    datasets: tuple[str, ...] = ("phantom-binary-32",)
    protocols: tuple[str, ...] = ("linear",)
    seeds: tuple[int, ...] = (0,)
    fractions: tuple[float, ...] = (1.0,)
    protocol_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    input_size: int | None = None
    bf16: bool | None = None
    batch_size: int = 128
    data_root: str | None = None
    pretrain: tuple[dict[str, Any], ...] = ()
    analyses: tuple[str, ...] = ()
    analysis_options: dict[str, Any] = field(default_factory=dict)

    # No __post_init__ checks: `check_spec` (called by `load_spec` and `run_grid`) reports every problem of a
    # spec in one message, which a constructor raising at the first one could not.


_MAX_SEED = 2**32 - 1  # numpy's legacy seeding and many samplers take at most 32 bits


def _field_problems(spec: GridSpec) -> list[str]:
    """What is wrong with the spec's values on their own (no registry needed)."""
    if not all(isinstance(step, Mapping) for step in spec.pretrain):
        return [f"Each pretrain step of the spec must be a mapping {{name: ..., method: ..., dataset: ...}}; got "
                f"{list(spec.pretrain)}."]
    problems = []
    try:
        check_steps(spec.pretrain)
    except ConfigError as e:
        problems.append(str(e))
    problems += [f"The {key!r} parameter of GridSpec must be a non-empty list." for key in
                 ("models", "datasets", "seeds", "fractions") if not getattr(spec, key)]
    if not spec.protocols and not spec.analyses:
        problems.append("The spec runs nothing: give 'protocols' (linear, knn, ...) or 'analyses' (saliency, ...).")
    if bad := [f for f in spec.fractions if not 0.0 < f <= 1.0]:
        problems.append(f"The 'fractions' parameter of GridSpec must hold floats in the range (0, 1]. "
                        f"Got {bad} instead.")
    if bad := [s for s in spec.seeds if isinstance(s, bool) or not 0 <= s <= _MAX_SEED]:
        problems.append(f"The 'seeds' parameter of GridSpec must hold ints in the range [0, 2^32 - 1]. "
                        f"Got {bad} instead.")
    for key in ("batch_size", "input_size"):
        value = getattr(spec, key)
        if value is not None and value < 1:
            problems.append(f"The {key!r} parameter of GridSpec must be an int in the range [1, inf). "
                            f"Got {value} instead.")
    return problems


def _listing(problems: list[str], where: str = "") -> str:
    head = f"The spec{f' {where}' if where else ''} has {len(problems)} problem{'s' * (len(problems) > 1)}; "
    return head + "nothing was run. Fix " + ("it" if len(problems) == 1 else "them") + ":\n" + "\n".join(
        f"  - {p}" for p in problems)


def spec_problems(spec: GridSpec) -> list[str]:
    """Every problem of the spec's names and options that can be found without data: unknown models,
    datasets and protocols (with the closest names), options their protocol, dataset or pretraining step
    would refuse, and options naming something the grid does not hold."""
    from medtransfer.models import MODELS
    from medtransfer.models.local import is_model_dir
    from medtransfer.registry import did_you_mean

    problems = _field_problems(spec)
    if any("pretrain" in p for p in problems):  # malformed steps: the name checks below would only add noise
        return problems
    steps = [str(step["name"]) for step in spec.pretrain]
    problems += [f"model {m!r} is not a registered model, a model folder or a pretraining step of the spec."
                f"{did_you_mean(m, MODELS.names() + steps)} See `medtransfer models list`."
                for m in spec.models if m not in MODELS and m not in steps and not is_model_dir(m)]
    problems += _dataset_problems(spec)
    problems += _protocol_problems(spec)
    problems += _analysis_problems(spec)
    if not problems:  # the kinds of known names only
        problems += _kind_problems(spec)
    for step in spec.pretrain:
        try:
            step_config(spec, step)
        except MedtransferError as e:
            problems.append(str(e))
    return problems


def _option_problems(kind: str, options: dict[str, Any], grid: tuple[str, ...], known: Callable[[str], bool],
                     check: Callable[[str, dict[str, Any]], None]) -> list[str]:
    """Problems of the `kind`_options mapping: names nothing registered, not a mapping, or refused by `check`.
    Options of a known name the grid leaves out (a spec reused with other `key=value` lists) are not checked."""
    from medtransfer.registry import did_you_mean

    problems = []
    for name, value in options.items():
        if not known(name):
            problems.append(f"{kind}_options names {name!r}, which is not a known {kind}."
                            f"{did_you_mean(name, list(grid))}")
        elif not isinstance(value, dict):
            problems.append(f"{kind}_options of {name!r} must be a mapping of option to value; got {value!r}.")
        elif name in grid:
            try:
                check(name, value)
            except MedtransferError as e:
                problems.append(f"{kind}_options of {name!r}: {e}")
    return problems


def _dataset_problems(spec: GridSpec) -> list[str]:
    from medtransfer.data.base import DATASETS
    from medtransfer.data.sources import check_options
    from medtransfer.registry import did_you_mean

    def known(d: str) -> bool:
        return d in DATASETS or (is_user_path(d) and Path(d).expanduser().exists())

    problems = [f"dataset {d!r} is not a registered dataset, a folder or a CSV file."
                f"{did_you_mean(d, DATASETS.names())} See `medtransfer datasets list`."
                for d in spec.datasets if not known(d)]
    return problems + _option_problems("dataset", spec.dataset_options, spec.datasets, known, check_options)


def _protocol_problems(spec: GridSpec) -> list[str]:
    from medtransfer.protocols.registry import PROTOCOLS, check_options
    from medtransfer.registry import did_you_mean
    from medtransfer.runner.trained import TRAINED_PROTOCOLS, check_trained_options

    names = PROTOCOLS.names() + list(TRAINED_PROTOCOLS)
    problems = [f"protocol {p!r} is not one of {names}.{did_you_mean(p, names)}"
                for p in spec.protocols if p not in names]

    def check(p: str, options: dict[str, Any]) -> None:
        (check_trained_options if p in TRAINED_PROTOCOLS else check_options)(p, options)

    return problems + _option_problems("protocol", spec.protocol_options, spec.protocols, names.__contains__, check)


def _analysis_problems(spec: GridSpec) -> list[str]:
    from medtransfer.analysis import ANALYSES
    from medtransfer.registry import did_you_mean
    from medtransfer.runner.analyses import resolve_options

    problems = [f"analysis {a!r} is not one of {list(ANALYSES)}.{did_you_mean(a, list(ANALYSES))}"
                for a in spec.analyses if a not in ANALYSES]
    return problems + _option_problems("analysis", spec.analysis_options, spec.analyses, ANALYSES.__contains__,
                                       resolve_options)


def check_spec(spec: GridSpec, *, where: str = "") -> None:
    """Raise one ConfigError listing every problem `spec_problems` finds (`where` names the spec file)."""
    problems = spec_problems(spec)
    if problems:
        raise ConfigError(_listing(problems, where))


def default_spec_path() -> Path:
    """The embedded default spec shipped inside the package."""
    return Path(str(resources.files("medtransfer") / "specs" / "default.yaml"))


def load_spec(path: str | Path | None = None, overrides: tuple[str, ...] | list[str] = ()) -> GridSpec:
    """Read a spec file (the embedded default when `path` is None) and apply `key=value` overrides.

    Raises:
        ConfigError: listing every problem of the spec (syntax, types, names, options) before anything runs.
    """
    spec, problems = from_dict_partial(GridSpec, resolve(path if path is not None else default_spec_path(), overrides))
    problems += spec_problems(spec)
    if problems:
        raise ConfigError(_listing(problems, repr(str(path)) if path is not None else ""))
    return spec


def spec_from_dict(settings: dict[str, Any], *, where: str) -> GridSpec:
    """A spec from already-read settings (a study's part, say), with the same checks as `load_spec`."""
    spec, problems = from_dict_partial(GridSpec, settings)
    problems += spec_problems(spec)
    if problems:
        raise ConfigError(_listing(problems, where))
    return spec


# Few-shot pools all splits and draws its own support sets: a label budget does not apply to it.
_NO_BUDGET = ("fewshot",)


def _dataset_key(dataset: str) -> str:
    """A user folder / CSV is keyed by its absolute path, so the same relative path elsewhere is another cell."""
    return str(Path(dataset).expanduser().resolve()) if is_user_path(dataset) else dataset


def _dataset_dims(dataset: str) -> int | None:
    """2 or 3 for a registered dataset or a user folder / CSV (images, 2D); None for an unknown name."""
    if is_user_path(dataset):
        return 2
    from medtransfer.data.base import DATASETS

    return DATASETS.get(dataset).card.dims if dataset in DATASETS else None


def _model_dims(spec: GridSpec, model: str) -> int | None:
    """2 or 3 for a registered model, a model folder or a pretraining step (its dataset's dims); None when
    unknown (a name no registry holds: creating it fails with its own error)."""
    if (step := step_of(spec, model)) is not None:
        return step.get("dims") or _dataset_dims(str(step["dataset"]))
    from medtransfer.models import MODELS
    from medtransfer.models.local import is_model_dir, read_model_dir

    if model in MODELS:
        return MODELS.get(model).dims
    return read_model_dir(model)[0].dims if is_model_dir(model) else None


def protocol_mismatches(spec: GridSpec) -> list[str]:
    """The (protocol, dataset) pairs of the grid that are not run: segment on a classification dataset, or a
    classification protocol on a segmentation dataset."""
    kinds = {d: is_segmentation(d) for d in spec.datasets}
    return [f"{p} x {d} ({'segmentation' if kinds[d] else 'classification'})" for p in spec.protocols
            for d in spec.datasets if wrong_kind(p, kinds[d])]


def _kind_problems(spec: GridSpec) -> list[str]:
    kinds = {d: is_segmentation(d) for d in spec.datasets}
    problems = [f"protocol {p!r} has no dataset of its kind in the grid: "
                + ("segment needs a segmentation dataset (drive, phantom-seg-organs, a folder of images/ and masks/)"
                   if p == "segment" else f"{p} needs class labels, and {list(spec.datasets)} are segmentation data")
                for p in spec.protocols if all(wrong_kind(p, kinds[d]) for d in spec.datasets)]
    problems += [f"dataset {d!r} is a segmentation dataset and no protocol of the grid segments: add 'segment'"
                 for d in spec.datasets if kinds[d] and not spec.analyses
                 and all(wrong_kind(p, True) for p in spec.protocols)]
    return problems


def _dims(spec: GridSpec) -> tuple[dict[str, int | None], dict[str, int | None]]:
    return {m: _model_dims(spec, m) for m in spec.models}, {d: _dataset_dims(d) for d in spec.datasets}


def _clash(a: int | None, b: int | None) -> bool:
    return a is not None and b is not None and a != b


def mismatched_pairs(spec: GridSpec) -> list[str]:
    """The (model, dataset) pairs of the grid whose dims differ ("name (2D) x name (3D)"): not run.

    Raises:
        ConfigError: when a model or a dataset of the grid has no partner of its dims at all (the grid would
            silently drop it).
    """
    return _mismatches(*_dims(spec))


def _mismatches(models: dict[str, int | None], datasets: dict[str, int | None]) -> list[str]:
    alone = [f"model {m} ({models[m]}D)" for m in models if all(_clash(models[m], v) for v in datasets.values())]
    alone += [f"dataset {d} ({datasets[d]}D)" for d in datasets
              if all(_clash(v, datasets[d]) for v in models.values())]
    if alone:
        raise ConfigError(f"In the grid, {' and '.join(alone)} has no partner of the same dims: a 2D model needs a "
                          "2D dataset and a 3D model a 3D one (e.g. resnet18-3d-small with adrenalmnist3d). Add "
                          "one, or drop it from the spec.")
    return [f"{m} ({models[m]}D) x {d} ({datasets[d]}D)" for m, d in itertools.product(models, datasets)
            if _clash(models[m], datasets[d])]


def expand(spec: GridSpec, *, precision: str) -> list[Cell]:
    """The spec's cells, each keyed by the hash of its settings, the feature-extraction version and the
    medtransfer version (a user folder whose images change needs ``--force``: its content is not hashed here).
    A 2D model is not paired with a 3D dataset, nor a 3D model with a 2D one."""
    cells = []
    models, datasets = _dims(spec)
    _mismatches(models, datasets)  # raises when a model or a dataset has no partner of its dims
    kinds = {d: is_segmentation(d) for d in spec.datasets}
    grid = itertools.product(spec.models, spec.datasets, spec.protocols, spec.fractions, spec.seeds)
    for model, dataset, protocol, fraction, seed in grid:
        if (protocol in _NO_BUDGET and fraction != 1.0) or _clash(models[model], datasets[dataset]) \
                or wrong_kind(protocol, kinds[dataset]):
            continue
        config = {
            "model": model, "dataset": _dataset_key(dataset), "protocol": protocol, "seed": seed,
            "fraction": fraction, "features_version": FEATURES_VERSION, "medtransfer": __version__,
            "protocol_options": spec.protocol_options.get(protocol, {}),
            "dataset_options": spec.dataset_options.get(dataset, {}),
            "input_size": spec.input_size, "precision": precision,
        }
        if (step := recipe(spec, model)) is not None:  # a model pretrained in the run: its recipe keys the cell
            config["pretrain"] = step
        cells.append(Cell(cell_id=config_hash(config), model=model, dataset=dataset, protocol=protocol,
                          seed=seed, fraction=fraction, config=config))
    for model, dataset, analysis, seed in itertools.product(spec.models, spec.datasets, spec.analyses, spec.seeds):
        if _clash(models[model], datasets[dataset]):
            continue
        config = {"model": model, "dataset": _dataset_key(dataset), "analysis": analysis, "seed": seed,
                  "features_version": FEATURES_VERSION, "medtransfer": __version__,
                  "analysis_options": spec.analysis_options.get(analysis, {}),
                  "dataset_options": spec.dataset_options.get(dataset, {}), "input_size": spec.input_size}
        if (step := recipe(spec, model)) is not None:
            config["pretrain"] = step
        cells.append(Cell(cell_id=config_hash(config), model=model, dataset=dataset, protocol=analysis, seed=seed,
                          fraction=None, config=config))
    return cells
