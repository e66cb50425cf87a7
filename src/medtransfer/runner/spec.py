"""A benchmark spec (YAML) and its expansion into cells: models x datasets x protocols x seeds."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from medtransfer import __version__
from medtransfer.config import config_hash, load
from medtransfer.data.base import is_user_path
from medtransfer.errors import ConfigError
from medtransfer.features import FEATURES_VERSION
from medtransfer.runner.pretraining import check_steps, recipe, step_of
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

    def __post_init__(self) -> None:
        check_steps(self.pretrain)
        for key in ("models", "datasets", "protocols", "seeds", "fractions"):
            if not getattr(self, key):
                raise ConfigError(f"The {key!r} parameter of GridSpec must be a non-empty list.")
        bad = [f for f in self.fractions if not 0.0 < f <= 1.0]
        if bad:
            raise ConfigError(f"The 'fractions' parameter of GridSpec must hold floats in the range (0, 1]. "
                              f"Got {bad} instead.")
        if self.batch_size < 1:
            raise ConfigError(f"The 'batch_size' parameter of GridSpec must be an int in the range [1, inf). "
                              f"Got {self.batch_size} instead.")


def default_spec_path() -> Path:
    """The embedded default spec shipped inside the package."""
    return Path(str(resources.files("medtransfer") / "specs" / "default.yaml"))


def load_spec(path: str | Path | None = None, overrides: tuple[str, ...] | list[str] = ()) -> GridSpec:
    """Read a spec file (the embedded default when `path` is None) and apply `key=value` overrides."""
    return load(GridSpec, path if path is not None else default_spec_path(), overrides)


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
    grid = itertools.product(spec.models, spec.datasets, spec.protocols, spec.fractions, spec.seeds)
    for model, dataset, protocol, fraction, seed in grid:
        if (protocol in _NO_BUDGET and fraction != 1.0) or _clash(models[model], datasets[dataset]):
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
    return cells
