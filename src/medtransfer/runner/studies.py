"""The reference studies as shipped grids: `medtransfer reproduce anton2022|hosseinzadeh2021|taleb2020|freddy2023|
medmnist-v2`, and the project's own headline experiment, `ssl-medmnist` (GPU-sized) / `ssl-medmnist-cpu`.

A study file (``medtransfer/specs/studies/<name>.yaml``) holds ``defaults`` (spec keys every part shares), ``parts``
(grids with their own datasets, protocols and options: a study's few-shot needs 2-way on binary datasets and 5-way
on the others), the study's published numbers with their source (``published``), and what it leaves out
(``omitted``). All parts run into one store; the published numbers are written into the store's meta table, so the
report puts ours beside them while reading the store alone.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medtransfer.errors import ConfigError, DataError, UnknownNameError
from medtransfer.registry import did_you_mean
from medtransfer.runner.spec import GridSpec, spec_from_dict
from medtransfer.runner.store import Cell

STUDIES = ("anton2022", "hosseinzadeh2021", "taleb2020", "freddy2023", "medmnist-v2", "ssl-medmnist",
           "ssl-medmnist-cpu")
_DEEP = ("dataset_options", "protocol_options")  # merged per key (a part's dataset's options replace the default's)


@dataclass(frozen=True)
class Published:
    """One published number: `value` (a fraction, as the store holds metrics) and its 95% half-width if given."""

    model: str
    dataset: str
    protocol: str
    metric: str
    value: float
    ci_halfwidth: float | None
    note: str
    source: str


@dataclass(frozen=True)
class Study:
    """A reference study: its parts (one grid each, one store for all), published numbers and omissions."""

    name: str
    title: str
    citation: str
    source: str
    parts: tuple[tuple[str, GridSpec], ...]
    published: tuple[Published, ...]
    omitted: tuple[str, ...]

    def datasets(self) -> list[str]:
        return list(dict.fromkeys(d for _, spec in self.parts for d in spec.datasets))


def study_file(name: str) -> Path:
    if name not in STUDIES:
        raise UnknownNameError(f"Unknown study {name!r}.{did_you_mean(name, list(STUDIES))} The studies: "
                               f"{', '.join(STUDIES)}.")
    return Path(str(resources.files("medtransfer") / "specs" / "studies" / f"{name}.yaml"))


def _merged(defaults: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(defaults)
    for key, value in part.items():
        if key in _DEEP and isinstance(value, dict):
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


def _published(raw: dict[str, Any], source: str) -> list[Published]:
    out = []
    for protocol, block in (raw or {}).items():
        metrics = block.get("metrics", {})
        for model, by_dataset in block["values"].items():
            for dataset, entry in by_dataset.items():
                value, half = (entry[0], entry[1]) if isinstance(entry, list) else (entry, None)
                metric = metrics.get(dataset, block.get("metric"))
                if metric is None:
                    raise ConfigError(f"Study file: {protocol}/{model}/{dataset} has no metric.")
                out.append(Published(model, dataset, protocol, metric, float(value),
                                     None if half is None else float(half), block.get("note", ""), source))
    return out


def load_study(name: str, overrides: dict[str, Any] | None = None) -> Study:
    """The study `name` with `overrides` (spec keys, e.g. ``{"seeds": [0]}`` or ``{"data_root": ...}``) applied
    to every part; every part is checked as a spec before anything runs."""
    raw = yaml.safe_load(study_file(name).read_text())
    defaults = _merged(raw.get("defaults", {}), {"name": name})
    parts = []
    for part in raw["parts"]:
        part = dict(part)
        label = part.pop("name")
        settings = _merged(_merged(defaults, part), overrides or {})
        # a part runs the pretraining steps of its own models only (the retina part never reads the pancreas)
        settings["pretrain"] = [s for s in settings.get("pretrain", []) if s["name"] in settings.get("models", [])]
        parts.append((label, spec_from_dict(settings, where=f"{name} (part {label!r})")))
    return Study(name=name, title=raw["title"], citation=raw["citation"], source=raw["source"], parts=tuple(parts),
                 published=tuple(_published(raw.get("published", {}), raw["source"])),
                 omitted=tuple(raw.get("omitted", ())))


def study_cells(study: Study, *, precision: str) -> list[tuple[str, Cell]]:
    """Every cell of every part (a cell two parts share is listed once, under the first)."""
    from medtransfer.runner.spec import expand

    seen: set[str] = set()
    out = []
    for label, spec in study.parts:
        for cell in expand(spec, precision=precision):
            if cell.cell_id not in seen:
                seen.add(cell.cell_id)
                out.append((label, cell))
    return out


def missing_data(study: Study, data_root: str | None) -> tuple[list[str], list[str]]:
    """What keeps the study's datasets from loading, checked without computing or downloading anything:
    ``(missing, downloadable)``: one message per dataset whose copy is not in place (layout, CSV, listed files),
    naming what is missing and where to get it; and one per dataset that is absent but downloads by itself
    (MedMNIST) when the run starts."""
    from medtransfer import data as mdata
    from medtransfer.errors import DownloadError

    missing, downloadable = [], []
    previous = os.environ.get("MEDTRANSFER_OFFLINE")
    os.environ["MEDTRANSFER_OFFLINE"] = "1"  # a check never downloads
    try:
        for dataset in study.datasets():
            spec = next(spec for _, spec in study.parts if dataset in spec.datasets)
            options = spec.dataset_options.get(dataset, {})
            root = data_root if data_root is not None else spec.data_root
            try:
                for split in mdata.get_card(dataset).splits:
                    mdata.load(dataset, split, data_root=root, **options)
            except DownloadError as e:
                downloadable.append(f"{dataset}: {e}")
            except (DataError, OSError) as e:
                missing.append(f"{dataset}: {e}")
    finally:
        if previous is None:
            del os.environ["MEDTRANSFER_OFFLINE"]
        else:
            os.environ["MEDTRANSFER_OFFLINE"] = previous
    return missing, downloadable


def published_rows(study: Study) -> list[dict[str, Any]]:
    """The published numbers as plain dicts (what the store's meta keeps for the report)."""
    return [{"study": study.name, "model": p.model, "dataset": p.dataset, "protocol": p.protocol, "metric": p.metric,
             "value": p.value, "ci_halfwidth": p.ci_halfwidth, "note": p.note, "source": p.source}
            for p in study.published]
